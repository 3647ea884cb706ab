"""What a report the store refuses answers over HTTP: a 4xx naming the field, no change."""

from __future__ import annotations

from fastapi.testclient import TestClient

from knapsack_service.main import create_app
from knapsack_service.store.records import EMPTY_RECORD_BYTES
from tests.service.conftest import make_settings


def body(report_id: str, *results: tuple[str, int, int], step: int = 1) -> dict:
    rows = [{"prompt_id": p, "successes": s, "trials": t} for p, s, t in results]
    return {"report_id": report_id, "step": step, "results": rows}


def counters(client: TestClient) -> dict:
    return client.get("/v1/runs/r").json()["counters"]


def test_duplicate_answers_the_original_ack_and_a_collision_is_409(app_client: TestClient) -> None:
    assert app_client.put("/v1/runs/r", json={}).status_code == 201
    first = app_client.post("/v1/runs/r/outcomes", json=body("rank", ("a", 1, 2), ("b", 0, 2)))
    assert first.json() == {"accepted": 2, "duplicate": False}
    retry = app_client.post("/v1/runs/r/outcomes", json=body("rank", ("a", 1, 2), ("b", 0, 2)))
    assert retry.json() == {"accepted": 2, "duplicate": True}
    before = counters(app_client)

    other = app_client.post("/v1/runs/r/outcomes", json=body("rank", ("c", 2, 2)))
    assert other.status_code == 409
    error = other.json()["error"]
    assert error["code"] == "report_conflict"
    assert error["details"][0]["field"] == "report_id"
    assert "rank" in error["message"]
    after = counters(app_client)
    assert after.pop("duplicate_reports") == before.pop("duplicate_reports")
    assert after == before


def test_report_limits_are_422_naming_results(redis_url: str) -> None:
    settings = make_settings(redis_url=redis_url, max_run_prompts=3, max_report_results=4)
    with TestClient(create_app(settings)) as client:
        client.put("/v1/runs/r", json={})
        ok = client.post("/v1/runs/r/outcomes", json=body("a", ("p1", 1, 2), ("p2", 1, 2)))
        assert ok.status_code == 200
        too_many = client.post("/v1/runs/r/outcomes", json=body("b", ("p3", 1, 2), ("p4", 1, 2)))
        assert too_many.status_code == 422
        assert too_many.json()["error"]["details"][0]["field"] == "results"
        assert "KRL_MAX_RUN_PROMPTS" in too_many.json()["error"]["message"]
        too_large = client.post(
            "/v1/runs/r/outcomes", json=body("c", *[(f"p{i}", 0, 1) for i in range(5)])
        )
        assert too_large.status_code == 422
        assert "at most 4 entries" in too_large.json()["error"]["message"]
        assert counters(client)["prompts"] == 2
        assert counters(client)["reports"] == 1


def test_a_trial_counter_overflow_is_422_naming_the_group() -> None:
    with TestClient(create_app(make_settings())) as client:
        client.put("/v1/runs/r", json={})
        client.post("/v1/runs/r/outcomes", json=body("seed", ("p", 0, 1), step=0))
        near_limit = bytearray(EMPTY_RECORD_BYTES)
        near_limit[6:12] = (2**48 - 2).to_bytes(6, "little")
        near_limit[36:44] = bytes(8)
        client.app.state.krl.store._runs["r"].records["p"] = bytes(near_limit)
        answer = client.post("/v1/runs/r/outcomes", json=body("big", ("q", 1, 1), ("p", 1, 5)))
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["details"][0]["field"] == "results.1.trials"
        assert counters(client)["reports"] == 1
