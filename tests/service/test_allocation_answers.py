"""Allocation and lookup answers: the wire models read them back, NaN estimates are null."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from knapsack_client import AllocationResponse, LookupResponse


def test_allocation_answer_is_the_response_model_with_null_estimates(
    app_client: TestClient,
) -> None:
    app_client.put("/v1/runs/enc", json={"estimator": {"window": 4, "min_observations": 2}})
    results = [{"prompt_id": "seen", "successes": 1, "trials": 4, "mean_response_tokens": 7.5}]
    app_client.post("/v1/runs/enc/outcomes", json={"report_id": "a", "step": 0, "results": results})
    body = {"step": 1, "prompts": ["seen", "new ☃", 'q"uote'], "budget": 20, "workers": 2}
    response = app_client.post("/v1/runs/enc/allocations", json=body)
    assert response.headers["content-type"] == "application/json"
    raw = json.loads(response.content)  # strict JSON: NaN would not parse as null
    parsed = AllocationResponse.model_validate_json(response.content)
    assert [a.prompt_id for a in parsed.allocations] == ["seen", "new ☃", 'q"uote']
    assert [a["p_hat"] for a in raw["allocations"]] == [0.25, None, None]
    assert sum(a.n for a in parsed.allocations) == 20 and parsed.budget == 20
    assert parsed.shards is not None and len(parsed.shards) == 2
    assert parsed.degraded is False and parsed.reason is None and parsed.step == 1

    lookup = app_client.post("/v1/runs/enc/prompts/lookup", json={"prompt_ids": ["seen", "x"]})
    seen, unseen = LookupResponse.model_validate_json(lookup.content).prompts
    assert (seen.successes, seen.trials, seen.p_hat, seen.last_step) == (1, 4, 0.25, 0)
    assert (seen.window_successes, seen.window_trials) == (1, 4)
    assert seen.posterior == (2.0, 4.0) and seen.mean_response_tokens == 7.5
    assert (unseen.trials, unseen.p_hat, unseen.last_step, unseen.mean_response_tokens) == (
        0, None, None, None
    )  # fmt: skip
