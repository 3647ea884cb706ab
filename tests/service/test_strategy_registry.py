"""Strategies by name over HTTP: the engine's registry decides, the wire model does not."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from knapsack_service.engine.limits import Limits
from knapsack_service.engine.strategies import (
    REGISTRY,
    AllocationResult,
    Problem,
    Strategy,
    register,
)
from knapsack_service.engine.strategies.uniform import even_counts
from tests.service.test_runs_http import run_path


def test_unknown_strategy_is_a_422_and_creates_nothing(memory_app_client: TestClient) -> None:
    response = memory_app_client.put(run_path("r"), json={"strategy": "greedy"})
    assert response.status_code == 422, response.text
    assert "strategy" in response.text
    assert memory_app_client.get(run_path("r")).status_code == 404
    bad = memory_app_client.put(run_path("r"), json={"strategy": "Not A Name"})
    assert bad.status_code == 422


def _reversed_uniform(problem: Problem, limits: Limits) -> AllocationResult:
    return AllocationResult(n=even_counts(int(problem.budget), problem.size)[::-1].copy(), value=0)


def test_a_new_strategy_needs_only_its_engine_module(memory_app_client: TestClient) -> None:
    register(Strategy(name="reversed-uniform", solve=_reversed_uniform, needs="any"))
    try:
        put = memory_app_client.put(run_path("n"), json={"strategy": "reversed-uniform"})
        assert put.status_code == 201, put.text
        response = memory_app_client.post(
            run_path("n", "/allocations"), json={"step": 0, "prompts": ["a", "b", "c"], "budget": 7}
        )
        assert response.status_code == 200, response.text
        assert [a["n"] for a in response.json()["allocations"]] == [2, 2, 3]
        solve = memory_app_client.post(
            "/v1/solve",
            json={"success_rates": [0.5, 0.5], "budget": 5, "strategy": "reversed-uniform"},
        )
        assert solve.status_code == 200 and solve.json()["n"] == [2, 3]
        assert np.sum(solve.json()["n"]) == 5
    finally:
        del REGISTRY["reversed-uniform"]
