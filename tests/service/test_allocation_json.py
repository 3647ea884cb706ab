"""The allocation answer's hand-built JSON text is exactly `json.dumps` of its dict."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from knapsack_client import AllocationRequest
from knapsack_service.api.routes.runs import _allocation_json
from knapsack_service.engine import balance_shards
from knapsack_service.planning import Solution

ODD_IDS = ['q"uote', "back\\slash", "ünï", "\udc80lone", "tab\t", "é" * 3, "", "x" * 300]


def _allocation_body(
    request: AllocationRequest,
    strategy: str,
    budget: int,
    solution: Solution,
    p_hat: np.ndarray,
    *,
    degraded: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    """The answer as plain JSON types: the reference `_allocation_json` must reproduce."""
    n_values = solution.n.tolist()
    p_values = [None if p != p else p for p in p_hat.tolist()]  # NaN -> null
    allocations = [
        {"prompt_id": prompt_id, "n": n, "p_hat": p}
        for prompt_id, n, p in zip(request.prompts, n_values, p_values, strict=True)
    ]
    return {
        "step": request.step,
        "allocations": allocations,
        "shards": solution.shards,
        "imbalance": solution.imbalance,
        "strategy": strategy,
        "budget": budget,
        "value": solution.value,
        "solve_seconds": solution.solve_seconds,
        "degraded": degraded,
        "reason": reason,
    }


def _case(seed: int, size: int, workers: int) -> tuple[AllocationRequest, Solution, np.ndarray]:
    rng = np.random.default_rng(seed)
    prompts = [f"{ODD_IDS[i % len(ODD_IDS)]}-{i}" for i in range(size)]
    n = rng.integers(0, 40, size).astype(np.int64)
    p_hat = rng.choice([np.nan, 0.0, -0.0, 1.0, 0.1, 1 / 3, 1e-300, 5e-324, 0.5], size)
    p_hat[: size // 3] = rng.random(size // 3)
    plan = balance_shards(n, workers, split_groups=bool(seed % 2)) if workers > 1 else None
    solution = Solution(
        n=n,
        value=float(rng.random()),
        cost=None,
        shards=None if plan is None else plan.shards,
        imbalance=None if plan is None else plan.imbalance,
        solve_seconds=1e-4,
    )
    request = AllocationRequest.model_construct(step=seed, prompts=prompts)
    return request, solution, p_hat


@pytest.mark.parametrize(
    ("seed", "size", "workers"), [(0, 1, 1), (1, 7, 3), (2, 64, 8), (3, 1024, 8), (4, 5, 16)]
)
def test_allocation_text_is_json_dumps_of_the_body(seed: int, size: int, workers: int) -> None:
    request, solution, p_hat = _case(seed, size, workers)
    for degraded, reason in ((False, None), (True, 'store "down"')):
        text = _allocation_json(
            request, "knapsack", 123, solution, p_hat, degraded=degraded, reason=reason
        )
        body = _allocation_body(
            request, "knapsack", 123, solution, p_hat, degraded=degraded, reason=reason
        )
        assert text == json.dumps(body)
