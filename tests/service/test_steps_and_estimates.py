"""Steps far beyond a run's last step are refused; a prompt's estimate ignores its companions."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from knapsack_service.engine import pooled_beta_prior
from knapsack_service.main import create_app
from tests.service.conftest import make_settings

AHEAD = 100


def report(client: TestClient, run: str, report_id: str, step: int, prompt: str = "p") -> int:
    body = {
        "report_id": report_id,
        "step": step,
        "results": [{"prompt_id": prompt, "successes": 8, "trials": 8}],
    }
    return client.post(f"/v1/runs/{run}/outcomes", json=body).status_code


@pytest.fixture(params=["memory", "redis"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "memory":
        return {"max_step_ahead": AHEAD}
    return {"max_step_ahead": AHEAD, "redis_url": request.getfixturevalue("redis_url")}


def test_steps_beyond_the_horizon_are_a_422_and_change_nothing(
    store_settings: dict[str, object],
) -> None:
    # Issue 12, item 9: one report at step 2**31 - 1 pinned the run's last step.
    with TestClient(create_app(make_settings(**store_settings))) as client:
        client.put("/v1/runs/h", json={})
        assert report(client, "h", "far", 2**31 - 1) == 422  # no report yet: from step 0
        assert report(client, "h", "first", 40) == 200
        refused = client.post(
            "/v1/runs/h/outcomes",
            json={
                "report_id": "late",
                "step": 40 + AHEAD + 1,
                "results": [{"prompt_id": "p", "successes": 0, "trials": 8}],
            },
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"][0]["field"] == "step"
        assert client.get("/v1/runs/h").json()["counters"]["last_step"] == 40
        allocation = {"step": 2**31 - 1, "prompts": ["p"], "budget": 8}
        assert client.post("/v1/runs/h/allocations", json=allocation).status_code == 422
        assert report(client, "h", "edge", 40 + AHEAD) == 200  # the horizon itself is allowed
        assert report(client, "h", "next", 40 + 2 * AHEAD) == 200


def test_a_second_process_learns_the_last_step_before_refusing(redis_url: str) -> None:
    settings = make_settings(redis_url=redis_url, max_step_ahead=AHEAD)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        first.put("/v1/runs/two", json={})
        assert report(second, "two", "a", 10) == 200  # second now knows step 10
        for index, step in enumerate(range(100, 400, 100)):
            assert report(first, "two", f"b{index}", step) == 200
        assert report(second, "two", "c", 350) == 200  # beyond 10 + 100, within 300 + 100


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_lookup_estimates_ignore_companions_and_match_the_allocation(
    store: str, request: pytest.FixtureRequest
) -> None:
    # Issue 12, item 10: lookup decayed to the newest step among the requested ids.
    extra = {} if store == "memory" else {"redis_url": request.getfixturevalue("redis_url")}
    with TestClient(create_app(make_settings(**extra))) as client:
        beta = {"kind": "beta", "decay": 0.5, "decay_unit": "step", "prior": [1.0, 1.0]}
        client.put("/v1/runs/e", json={"estimator": beta, "strategy": "knapsack", "min_n": 1})
        assert report(client, "e", "old", 0, prompt="old") == 200
        assert report(client, "e", "new", 6, prompt="new") == 200

        def p_hat(ids: list[str], step: int | None = None) -> float:
            body: dict[str, object] = {"prompt_ids": ids}
            if step is not None:
                body["step"] = step
            answer = client.post("/v1/runs/e/prompts/lookup", json=body).json()
            return answer["prompts"][0]["p_hat"]

        alone, together = p_hat(["old"]), p_hat(["old", "new"])
        assert alone == together  # was 0.9 alone (no decay) and 0.5 + decayed beside "new"
        assert alone == pytest.approx((1 + 8 * 0.5**6) / (2 + 8 * 0.5**6))
        allocation = client.post(
            "/v1/runs/e/allocations", json={"step": 9, "prompts": ["old"], "budget": 2}
        ).json()
        assert allocation["allocations"][0]["p_hat"] == p_hat(["old"], step=9)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_the_pooled_prior_is_the_runs_whatever_the_companions(
    store: str, request: pytest.FixtureRequest
) -> None:
    # Issue 12, item 10: "pooled" was fitted over the request's prompts, so a prompt
    # asked alone got the flat prior and beside others a fitted one.
    extra = {} if store == "memory" else {"redis_url": request.getfixturevalue("redis_url")}
    counts = {"a": (1, 8), "b": (7, 8), "c": (4, 8), "d": (0, 16), "e": (15, 16), "f": (3, 3)}
    with TestClient(create_app(make_settings(**extra))) as client:
        beta = {"kind": "beta", "decay": 0.9, "prior": "pooled", "plug_in_from": None}
        client.put("/v1/runs/pool", json={"estimator": beta, "strategy": "knapsack", "min_n": 1})
        results = [
            {"prompt_id": pid, "successes": s, "trials": t} for pid, (s, t) in counts.items()
        ]
        body = {"report_id": "all", "step": 3, "results": results}
        assert client.post("/v1/runs/pool/outcomes", json=body).status_code == 200

        def lookup(ids: list[str]) -> dict[str, dict]:
            body = {"prompt_ids": ids, "step": 3}
            answer = client.post("/v1/runs/pool/prompts/lookup", json=body).json()
            return {entry["prompt_id"]: entry for entry in answer["prompts"]}

        alone = lookup(["a"])["a"]
        for companions in (["b"], ["b", "c", "d"], ["e", "f", "never-seen"]):
            assert lookup(["a", *companions])["a"] == alone
        allocation = client.post(
            "/v1/runs/pool/allocations", json={"step": 3, "prompts": ["a"], "budget": 2}
        ).json()
        assert allocation["allocations"][0]["p_hat"] == alone["p_hat"]
        # An unseen prompt's posterior is the prior itself: the run's, over all prompts.
        prior = lookup(["never-seen"])["never-seen"]["posterior"]
        successes, trials = np.array(list(counts.values())).T
        assert prior == pytest.approx(pooled_beta_prior(successes, trials), rel=1e-9)
        assert prior != pytest.approx([1.0, 1.0])
