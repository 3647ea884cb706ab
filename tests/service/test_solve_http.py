"""`POST /v1/solve` over HTTP: answers, shards, and a 422 naming the field for bad input."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from knapsack_service.main import create_app
from tests.service.conftest import make_settings

PAPER_EXAMPLE = {
    "success_rates": [0.5, 0.0, 1.0, 0.0625],
    "budget": 32,
    "min_n": 2,
    "max_n": 128,
    "strategy": "knapsack",
}


def test_solve_spends_the_budget_and_answers_every_prompt(memory_app_client: TestClient) -> None:
    response = memory_app_client.post("/v1/solve", json=PAPER_EXAMPLE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["strategy"] == "knapsack"
    assert len(body["n"]) == 4
    assert sum(body["n"]) == 32
    # p = 0 and p = 1 get negative_n / positive_n (default min_n); the hard-but-solvable
    # prompt (p = 1/16) needs many rollouts for a non-zero gradient and gets the most.
    assert body["n"][1] == 2 and body["n"][2] == 2
    assert body["n"][3] > body["n"][0] >= 2
    assert body["value"] > 0
    assert body["solve_seconds"] >= 0


@pytest.mark.parametrize("strategy", ["uniform", "filter", "knapsack"])
def test_every_strategy_spends_exactly_the_budget(
    memory_app_client: TestClient, strategy: str
) -> None:
    rates = [i / 16 for i in range(1, 16)] * 4 + [None, None]
    request = {
        "success_rates": rates,
        "budget": 8 * len(rates),
        "strategy": strategy,
        "min_n": 2,
        "max_n": 64,
    }
    body = memory_app_client.post("/v1/solve", json=request).json()
    assert sum(body["n"]) == 8 * len(rates)
    assert all(0 <= n <= 64 for n in body["n"])
    assert body["n"][-1] == 8  # never seen: default_n


def test_uniform_spreads_the_remainder_over_the_lowest_indices(
    memory_app_client: TestClient,
) -> None:
    request = {"success_rates": [0.5] * 4, "budget": 10, "strategy": "uniform"}
    assert memory_app_client.post("/v1/solve", json=request).json()["n"] == [3, 3, 2, 2]


def test_knapsack_bayes_values_unseen_prompts_through_the_posterior(
    memory_app_client: TestClient,
) -> None:
    request = {
        "posterior": [[1, 1], [30, 2], [2, 30], [5, 10]],
        "budget": 40,
        "strategy": "knapsack-bayes",
    }
    body = memory_app_client.post("/v1/solve", json=request).json()
    assert sum(body["n"]) == 40 and len(body["n"]) == 4


def test_costs_keep_the_total_cost_within_the_budget(memory_app_client: TestClient) -> None:
    request = {
        "success_rates": [0.3, 0.05, 0.6, 0.2],
        "costs": [100, 400, 50, 800],
        "budget": 6000,
        "strategy": "knapsack",
    }
    body = memory_app_client.post("/v1/solve", json=request).json()
    total = sum(n * c for n, c in zip(body["n"], request["costs"], strict=True))
    assert total <= 6000
    assert body["cost"] == pytest.approx(total)


def test_shards_balance_rollouts_across_workers(memory_app_client: TestClient) -> None:
    rates = [i / 17 for i in range(1, 17)]
    request = {"success_rates": rates, "budget": 130, "strategy": "knapsack", "workers": 4}
    body = memory_app_client.post("/v1/solve", json=request).json()
    totals = [sum(count for _, count in shard) for shard in body["shards"]]
    assert sum(totals) == 130 and max(totals) - min(totals) <= 1
    per_prompt = [0] * len(rates)
    for shard in body["shards"]:
        for index, count in shard:
            per_prompt[index] += count
    assert per_prompt == body["n"]


def test_whole_groups_per_worker_report_the_imbalance(memory_app_client: TestClient) -> None:
    rates = [i / 17 for i in range(1, 17)]
    request = {"success_rates": rates, "budget": 130, "workers": 3, "split_groups": False}
    body = memory_app_client.post("/v1/solve", json=request).json()
    indices = sorted(index for shard in body["shards"] for index, _ in shard)
    assert indices == sorted(set(indices))  # no group split
    totals = [sum(count for _, count in shard) for shard in body["shards"]]
    assert body["imbalance"] == max(totals) - min(totals)


BAD_INPUTS = [
    ("nan rate", '{"success_rates": [NaN, 0.5], "budget": 8}', "success_rates.0"),
    ("infinite rate", '{"success_rates": [Infinity], "budget": 8}', "success_rates.0"),
    ("rate above one", '{"success_rates": [0.5, 1.5], "budget": 8}', "success_rates.1"),
    ("negative rate", '{"success_rates": [-0.1], "budget": 8}', "success_rates.0"),
    ("not a number", '{"success_rates": ["abc"], "budget": 8}', "success_rates.0"),
    ("empty list", '{"success_rates": [], "budget": 8}', "success_rates"),
    ("costs length", '{"success_rates": [0.5, 0.5], "budget": 8, "costs": [1]}', "costs"),
    (
        "posterior length",
        '{"success_rates": [0.5], "budget": 8, "posterior": [[1,1],[1,1]]}',
        "posterior",
    ),
    ("min above max", '{"success_rates": [0.5], "budget": 8, "min_n": 9, "max_n": 4}', "max_n"),
    ("negative budget", '{"success_rates": [0.5], "budget": -1}', "budget"),
    ("infeasible budget", '{"success_rates": [0.5, 0.5], "budget": 1000, "max_n": 8}', "budget"),
    ("budget too small", '{"success_rates": [0.5, 0.5], "budget": 1, "min_n": 2}', "budget"),
    ("fractional budget", '{"success_rates": [0.5], "budget": 2.5}', "budget"),
    (
        "bayes without posterior",
        '{"success_rates": [0.5], "budget": 8, "strategy": "knapsack-bayes"}',
        "posterior",
    ),
    ("unknown strategy", '{"success_rates": [0.5], "budget": 8, "strategy": "greedy"}', "strategy"),
    ("unknown field", '{"success_rates": [0.5], "budget": 8, "max_N": 3}', "max_N"),
    ("zero workers", '{"success_rates": [0.5], "budget": 8, "workers": 0}', "workers"),
    ("negative cost", '{"success_rates": [0.5], "budget": 8, "costs": [-1]}', "costs.0"),
    ("missing budget", '{"success_rates": [0.5]}', "budget"),
    ("not json", "{success_rates", "body"),
    ("not an object", "[1, 2]", "body"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_422_naming_the_field(
    memory_app_client: TestClient, case: str, body: str, field: str
) -> None:
    response = memory_app_client.post(
        "/v1/solve", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, (case, response.text)
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    fields = [detail["field"] for detail in error["details"]]
    assert field in fields, (case, error)
    assert field in error["message"] or fields[0] in error["message"]


def test_infeasible_budget_names_the_feasible_range(memory_app_client: TestClient) -> None:
    request = {"success_rates": [0.5, 0.5], "budget": 1000, "max_n": 8, "min_n": 2}
    error = memory_app_client.post("/v1/solve", json=request).json()["error"]
    assert "4" in error["message"] and "16" in error["message"]
    assert (error["details"][0]["low"], error["details"][0]["high"]) == (4, 16)


def test_more_prompts_than_configured_is_a_422() -> None:
    with TestClient(create_app(make_settings(max_prompts=3))) as client:
        response = client.post("/v1/solve", json={"success_rates": [0.5] * 4, "budget": 8})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "success_rates"


def test_operations_endpoints(memory_app_client: TestClient) -> None:
    assert memory_app_client.get("/healthz").json() == {"status": "ok"}
    memory_app_client.post("/v1/solve", json=PAPER_EXAMPLE)
    metrics = memory_app_client.get("/metrics").text
    assert 'krl_solve_duration_seconds_count{strategy="knapsack"}' in metrics
    assert 'krl_http_requests_total{method="POST",route="/v1/solve",status="200"}' in metrics
    spec = memory_app_client.get("/openapi.json").json()
    assert "/v1/solve" in spec["paths"] and "/v1/runs/{run_id}/allocations" in spec["paths"]
    assert memory_app_client.get("/docs").status_code == 200


def test_ready_once_kernels_are_compiled(memory_app_client: TestClient) -> None:
    import time

    for _ in range(600):  # compilation from a cold cache takes seconds, not minutes
        response = memory_app_client.get("/readyz")
        if response.status_code == 200:
            break
        time.sleep(0.1)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"kernels": True, "store": True}


def test_request_id_is_echoed(memory_app_client: TestClient) -> None:
    response = memory_app_client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


def test_oversized_body_is_refused_before_parsing() -> None:
    with TestClient(create_app(make_settings(max_body_bytes=1024))) as client:
        big = json.dumps({"success_rates": [0.5] * 1000, "budget": 8000})
        response = client.post(
            "/v1/solve", content=big, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
