"""Inputs the models once let through: unbounded token means, ids that are not UTF-8."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def test_a_huge_mean_response_length_is_a_422_and_changes_nothing(
    app_client: TestClient,
) -> None:
    # Issue 12, item 14: 1e39 was accepted, stored as infinity and read back as null.
    app_client.put("/v1/runs/tokens", json={})
    result = {"prompt_id": "p", "successes": 1, "trials": 2, "mean_response_tokens": 1e39}
    report = {"report_id": "big", "step": 0, "results": [result]}
    response = app_client.post("/v1/runs/tokens/outcomes", json=report)
    assert response.status_code == 422, response.text
    detail = response.json()["error"]["details"][0]
    assert detail["field"] == "results.0.mean_response_tokens"
    lookup = app_client.post("/v1/runs/tokens/prompts/lookup", json={"prompt_ids": ["p"]})
    assert lookup.json()["prompts"][0]["trials"] == 0
    result["mean_response_tokens"] = 10_000_000
    assert app_client.post("/v1/runs/tokens/outcomes", json=report).status_code == 200


@pytest.mark.parametrize("escaped", ["team-a-%FF", "team-a-%FE", "%C3", "ok-%ED%A0%80"])
def test_run_ids_whose_escapes_are_not_utf8_are_a_422(app_client: TestClient, escaped: str) -> None:
    # Issue 12, item 15: team-a-%FF and team-a-%FE were one run, team-a-\ufffd.
    for method, suffix in [("PUT", ""), ("GET", ""), ("GET", "/summary"), ("DELETE", "")]:
        response = app_client.request(
            method, f"/v1/runs/{escaped}{suffix}", json={} if method == "PUT" else None
        )
        assert response.status_code == 422, (method, suffix, response.text)
        error = response.json()["error"]
        assert error["details"][0]["field"] == "run_id"
    assert app_client.get("/v1/runs/team-a-%EF%BF%BD").status_code == 404  # a real U+FFFD


def test_utf8_escapes_still_name_their_run(app_client: TestClient) -> None:
    assert app_client.put("/v1/runs/caf%C3%A9", json={}).status_code == 201
    assert app_client.get("/v1/runs/café").json()["run_id"] == "café"


def test_large_bodies_keep_the_contract_of_small_ones(memory_app_client: TestClient) -> None:
    # Bodies past 256 KiB are parsed in the threadpool, results in chunks: the 422s
    # must name the same fields as on the inline path.
    client = memory_app_client
    client.put("/v1/runs/large", json={})
    results = [{"prompt_id": f"prompt-{i:06d}", "successes": 1, "trials": 2} for i in range(8000)]
    results[600] = {"prompt_id": "bad", "successes": 3, "trials": 2}
    report = {"report_id": "big", "step": 0, "results": results}
    response = client.post("/v1/runs/large/outcomes", json=report)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "results.600.successes"

    too_many = {"report_id": "many", "step": 0, "results": results[:601] * 14}
    response = client.post("/v1/runs/large/outcomes", json=too_many)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "results"

    results[600] = {"prompt_id": "good", "successes": 1, "trials": 2}
    assert client.post("/v1/runs/large/outcomes", json=report).json()["accepted"] == 8000
    lookup = client.post(
        "/v1/runs/large/prompts/lookup", json={"prompt_ids": ["good", "prompt-000007"] * 9000}
    )
    assert lookup.status_code == 200
    assert lookup.json()["prompts"][1]["trials"] == 2
