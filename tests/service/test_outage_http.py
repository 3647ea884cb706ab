"""Redis outages seen through HTTP: degraded allocations, 503 reports, recovery, no loss."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from knapsack_service.main import create_app
from tests.service.conftest import make_settings
from tests.support.redis_server import RedisServer

PROMPTS = [f"p{i}" for i in range(12)]


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A private redis-server with an fsync-per-write append-only file."""
    with RedisServer(appendonly=True, appendfsync="always") as server:
        yield server


def send_report(client: TestClient, report_id: str, step: int) -> int:
    body = {
        "report_id": report_id,
        "step": step,
        "results": [{"prompt_id": p, "successes": 1, "trials": 4} for p in PROMPTS],
    }
    return client.post("/v1/runs/r/outcomes", json=body).status_code


def wait_ready(client: TestClient, want: int) -> int:
    status = 0
    for _ in range(1200):  # a bound on waiting (cold numba compile on a busy machine)
        status = client.get("/readyz").status_code
        if status == want:
            break
        time.sleep(0.1)
    return status


def test_redis_killed_mid_run_degrades_then_recovers_without_loss(
    durable_redis: RedisServer,
) -> None:
    settings = make_settings(redis_url=durable_redis.url, redis_timeout=0.3)
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/runs/r", json={}).status_code == 201
        assert send_report(client, "before", 0) == 200
        assert wait_ready(client, 200) == 200

        durable_redis.kill()
        allocation = client.post(
            "/v1/runs/r/allocations", json={"step": 1, "prompts": PROMPTS, "budget": 48}
        )
        assert allocation.status_code == 200
        body = allocation.json()
        assert body["degraded"] is True and body["reason"]
        assert [a["n"] for a in body["allocations"]] == [4] * 12  # uniform, training goes on
        during = client.post(
            "/v1/runs/r/outcomes",
            json={
                "report_id": "during",
                "step": 1,
                "results": [{"prompt_id": p, "successes": 2, "trials": 4} for p in PROMPTS],
            },
        )
        assert during.status_code == 503
        assert during.headers["retry-after"] == "1"
        assert during.json()["error"]["code"] == "store_unavailable"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics").text
        assert 'krl_degraded_allocations_total{reason="store_unavailable"} 1.0' in metrics

        durable_redis.start()  # same port and directory: replays the append-only file
        assert wait_ready(client, 200) == 200
        assert send_report(client, "during", 1) == 200  # the client's retry
        assert send_report(client, "during", 1) == 200  # and a duplicate of it
        again = client.post(
            "/v1/runs/r/allocations", json={"step": 2, "prompts": PROMPTS, "budget": 48}
        ).json()
        assert again["degraded"] is False
        stats = client.post("/v1/runs/r/prompts/lookup", json={"prompt_ids": PROMPTS}).json()
        for entry in stats["prompts"]:
            assert (entry["successes"], entry["trials"]) == (2, 8)  # before (1/4) + during (1/4)
        counters = client.get("/v1/runs/r").json()["counters"]
        assert counters["reports"] == 2 and counters["duplicate_reports"] == 1


def test_delete_removes_exactly_the_runs_keys(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    with TestClient(create_app(make_settings(redis_url=redis_url))) as client:
        client.put("/v1/runs/keep", json={})
        send_report_to = {
            "report_id": "k",
            "step": 0,
            "results": [{"prompt_id": "a", "successes": 1, "trials": 2}],
        }
        client.post("/v1/runs/keep/outcomes", json=send_report_to)
        before = set(raw.keys("*"))
        client.put("/v1/runs/r", json={})
        for step in range(3):
            send_report(client, f"x{step}", step)
            client.post("/v1/runs/r/allocations", json={"step": step, "prompts": PROMPTS})
        created = set(raw.keys("*")) - before
        assert created and all(b"{r}" in key for key in created)
        assert client.delete("/v1/runs/r").status_code == 200
        after = set(raw.keys("*"))
        assert after == before | ({b"krl:runs"} & after)
        assert not any(b"{r}" in key for key in after)


def test_degraded_allocations_keep_the_runs_settings_and_unknown_runs_get_503(
    durable_redis: RedisServer,
) -> None:
    settings = make_settings(redis_url=durable_redis.url, redis_timeout=0.3)
    four = ["a", "b", "c", "d"]
    with (
        TestClient(create_app(settings)) as served,
        TestClient(create_app(settings)) as fresh,
    ):
        assert served.put("/v1/runs/capped", json={"max_n": 16}).status_code == 201
        healthy = served.post(
            "/v1/runs/capped/allocations", json={"step": 0, "prompts": four, "budget": 400}
        )
        assert healthy.status_code == 422

        durable_redis.kill()
        too_much = served.post(
            "/v1/runs/capped/allocations", json={"step": 1, "prompts": four, "budget": 400}
        )
        assert too_much.status_code == 200, too_much.text
        assert too_much.json()["degraded"] is True
        # The run's max_n holds (was n = 100 each), as in the client's offline fallback.
        assert [a["n"] for a in too_much.json()["allocations"]] == [16] * 4
        within = served.post(
            "/v1/runs/capped/allocations", json={"step": 1, "prompts": four}
        ).json()
        assert within["degraded"] is True
        assert [a["n"] for a in within["allocations"]] == [8] * 4  # the run's default_n
        capped = served.post(
            "/v1/runs/capped/allocations",
            json={"step": 1, "prompts": four, "budget": 64, "max_n": 32},
        ).json()
        assert [a["n"] for a in capped["allocations"]] == [16] * 4

        unknown = fresh.post("/v1/runs/capped/allocations", json={"step": 1, "prompts": four})
        assert unknown.status_code == 503, unknown.text  # was a degraded 200
        assert unknown.json()["error"]["code"] == "store_unavailable"
        assert unknown.headers["retry-after"] == "1"
