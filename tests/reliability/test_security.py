"""Security over real uvicorn and real Redis: tokens, scopes, logs, input limits, key isolation.

One service for the module: a full token, a token scoped to `team-a-*`, metrics
behind the token, KRL_MAX_PROMPTS=50, its JSON log captured from stderr.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.reliability.bad_inputs import (
    CATALOGUE,
    SCOPED_TOKEN,
    SERVICE_ENV,
    TOKEN,
    run_path,
    send_all,
)
from tests.reliability.conftest import flush
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCOPED = {"Authorization": f"Bearer {SCOPED_TOKEN}"}
TRICKY_IDS = [
    "{a}",
    "}{",
    "krl:{victim}:cfg",
    "a:b:c",
    "*",
    "victim*",
    "?",
    "[a-z]",
    "line\nbreak",
    "carriage\r\nreturn",
    'quote"s',
    "single'quote",
    "back\\slash",
    "slash/inside",
    "percent%2Fencoded",
    "%",
    "tab\there",
    "nul\x00byte",
    "redis.call('FLUSHALL')",
    '{"json": [1, 2]}',
    "]]--[[",
    "ünïcødé ✓ 漢字",
    "\U0001f600",
    " ",
    "x" * 256,
]


@pytest.fixture(scope="module")
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    flush(redis_server)
    with redis.Redis.from_url(redis_server.url) as client:
        yield client


@pytest.fixture(scope="module")
def service(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[ServiceProcess]:
    with ServiceProcess({**SERVICE_ENV, "KRL_REDIS_URL": redis_server.url}) as process:
        yield process


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http


V1_CALLS = [
    ("POST", "/v1/solve", {"success_rates": [0.5], "budget": 2}),
    ("PUT", "/v1/runs/team-b-1", {}),
    ("GET", "/v1/runs/team-b-1", None),
    ("DELETE", "/v1/runs/team-b-1", None),
    ("POST", "/v1/runs/team-b-1/allocations", {"step": 0, "prompts": ["a"]}),
    ("POST", "/v1/runs/team-b-1/outcomes", {"report_id": "r", "step": 0, "results": []}),
    ("POST", "/v1/runs/team-b-1/prompts/lookup", {"prompt_ids": ["a"]}),
    ("GET", "/v1/runs/team-b-1/summary", None),
]


@pytest.mark.parametrize(("method", "path", "body"), V1_CALLS)
def test_every_v1_call_needs_a_known_token(
    client: httpx.Client, method: str, path: str, body: object
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), V1_CALLS[1:])
def test_a_scoped_token_gets_403_outside_its_runs(
    client: httpx.Client, method: str, path: str, body: object
) -> None:
    response = client.request(method, path, json=body, headers=SCOPED)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


def test_a_scoped_token_works_inside_its_runs(client: httpx.Client) -> None:
    assert client.put("/v1/runs/team-a-7", json={}, headers=SCOPED).status_code in (200, 201)
    body = {"step": 0, "prompts": ["a", "b"]}
    assert client.post("/v1/runs/team-a-7/allocations", json=body, headers=SCOPED).is_success
    assert client.delete("/v1/runs/team-a-7", headers=SCOPED).status_code == 200


def test_operations_endpoints_stay_open_and_metrics_is_behind_the_token(
    client: httpx.Client,
) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    metrics = client.get("/metrics", headers=AUTH)
    assert metrics.status_code == 200 and "krl_http_requests_total" in metrics.text


def test_every_bad_input_gets_a_4xx_in_the_contract_shape(
    client: httpx.Client, service: ServiceProcess
) -> None:
    outcomes = send_all(client)
    assert len(outcomes) == len(CATALOGUE)
    wrong = [(o.bad.kind, o.bad.name, o.status, o.code) for o in outcomes]
    wrong = [w for w in wrong if not 400 <= w[2] < 500 or w[3] is None]
    assert wrong == []
    assert '"exception"' not in service.log_text()
    assert client.get("/healthz").status_code == 200  # still alive after all of them


def test_ids_of_exactly_256_characters_are_accepted(client: httpx.Client) -> None:
    run_id = "r" * 256
    assert client.put(run_path(run_id), json={}, headers=AUTH).status_code in (200, 201)
    lookup = client.post(
        run_path(run_id, "/prompts/lookup"), json={"prompt_ids": ["p" * 256]}, headers=AUTH
    )
    assert lookup.status_code == 200
    assert client.delete(run_path(run_id), headers=AUTH).status_code == 200


def run_keys(redis_client: redis.Redis) -> set[bytes]:
    return {key for key in redis_client.scan_iter(count=1000) if key != b"krl:runs"}


def test_tricky_ids_round_trip_and_own_exactly_their_keys(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    victim = "victim"
    assert client.put(run_path(victim), json={}, headers=AUTH).status_code in (200, 201)
    victim_report = {"report_id": "v", "step": 0, "results": [{"prompt_id": "*", **COUNTS}]}
    assert client.post(run_path(victim, "/outcomes"), json=victim_report, headers=AUTH).is_success
    victim_keys = run_keys(redis_client)
    victim_dump = {key: redis_client.dump(key) for key in victim_keys}

    for run_id in TRICKY_IDS:
        before = run_keys(redis_client)
        created = client.put(run_path(run_id), json={}, headers=AUTH)
        assert created.status_code == 201, (run_id, created.text)
        assert created.json()["run_id"] == run_id
        got = client.get(run_path(run_id), headers=AUTH)
        assert got.status_code == 200 and got.json()["run_id"] == run_id
        prompts = list(dict.fromkeys([*TRICKY_IDS[:8], run_id]))
        report = {
            "report_id": run_id,
            "step": 3,
            "results": [{"prompt_id": p, **COUNTS} for p in prompts],
        }
        applied = client.post(run_path(run_id, "/outcomes"), json=report, headers=AUTH)
        assert applied.json() == {"accepted": len(prompts), "duplicate": False}, run_id
        allocation = client.post(
            run_path(run_id, "/allocations"), json={"step": 4, "prompts": prompts}, headers=AUTH
        )
        assert [a["prompt_id"] for a in allocation.json()["allocations"]] == prompts
        looked_up = client.post(
            run_path(run_id, "/prompts/lookup"), json={"prompt_ids": prompts}, headers=AUTH
        ).json()["prompts"]
        assert [p["prompt_id"] for p in looked_up] == prompts
        assert [(p["successes"], p["trials"]) for p in looked_up] == [(1, 4)] * len(prompts)

        created_keys = run_keys(redis_client) - before
        assert created_keys, run_id
        assert not created_keys & victim_keys
        assert client.delete(run_path(run_id), headers=AUTH).status_code == 200
        assert run_keys(redis_client) == before, run_id  # exactly its own keys are gone
        assert client.get(run_path(run_id), headers=AUTH).status_code == 404

    assert {key: redis_client.dump(key) for key in victim_keys} == victim_dump
    victim_stats = client.post(
        run_path(victim, "/prompts/lookup"), json={"prompt_ids": ["*", "{a}"]}, headers=AUTH
    ).json()["prompts"]
    assert [(p["successes"], p["trials"]) for p in victim_stats] == [(1, 4), (0, 0)]


COUNTS = {"successes": 1, "trials": 4}


def test_tokens_never_reach_the_log(client: httpx.Client, service: ServiceProcess) -> None:
    wrong = "Bearer tok-wrong-1c2d3e4f5a6b"
    client.get("/v1/runs/x", headers={"Authorization": wrong})  # 401 path
    client.get("/v1/runs/x", headers={"Authorization": "tok-full-9f8e7d6c5b4a"})  # no scheme
    client.get("/v1/runs/team-b-2", headers=SCOPED)  # 403 path
    client.post("/v1/solve", content=b"{", headers={**AUTH, "Content-Type": "application/json"})
    client.post("/v1/solve", json={"success_rates": [2.0], "budget": 2}, headers=AUTH)  # 422
    client.get("/metrics")  # 401 on metrics
    client.get("/metrics", headers=AUTH)
    client.get("/v1/runs/nope", headers=AUTH)  # 404
    log = service.log_text()
    assert '"route": "/v1/runs/{run_id}"' in log and '"status": 401' in log  # log was captured
    for secret in (TOKEN, SCOPED_TOKEN, "tok-wrong-1c2d3e4f5a6b"):
        assert secret not in log
