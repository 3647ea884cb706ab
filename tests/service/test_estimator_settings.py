"""The run estimators over HTTP on both stores: last-visit (default) and Beta per visit."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.service.test_runs_http import lookup, report, run_path


def _allocate(client: TestClient, run_id: str, step: int, prompts: list[str], budget: int):
    response = client.post(
        run_path(run_id, "/allocations"), json={"step": step, "prompts": prompts, "budget": budget}
    )
    assert response.status_code == 200, response.text
    return {a["prompt_id"]: a for a in response.json()["allocations"]}


def test_default_estimator_is_the_papers_last_visit(app_client: TestClient) -> None:
    created = app_client.put(run_path("r"), json={})
    assert created.json()["settings"]["estimator"]["kind"] == "last-visit"
    results = [
        {"prompt_id": "rare", "successes": 1, "trials": 36},
        {"prompt_id": "small", "successes": 3, "trials": 4},
    ]
    report(app_client, "r", "rep-0", 0, results)
    report(app_client, "r", "rep-1", 1, [{"prompt_id": "small", "successes": 4, "trials": 4}])
    rare, small = lookup(app_client, "r", ["rare", "small"])
    # One success in a visit of 36 reads 1/36 (a 16-outcome window reads 0: unsolved).
    assert rare["p_hat"] == pytest.approx(1 / 36)
    assert (rare["window_successes"], rare["window_trials"]) == (1, 36)
    # Visits of 4 < 16: the last 16 outcomes, 8 of them here.
    assert small["p_hat"] == pytest.approx(7 / 8)
    # The paper's long tail: a near-unsolved prompt gets a large group.
    groups = _allocate(app_client, "r", 2, ["rare", "small"], 80)
    assert groups["rare"]["n"] > 36


def test_beta_defaults_are_the_sweeps_choice(app_client: TestClient) -> None:
    # bench/sweep_bayes.py chose decay 0.9 per visit, the plug-in from strength 4 and
    # the pooled prior (fitted over the run: 0.846 against 0.833 for a flat one); the
    # old defaults (per step, always in expectation) scored 0.801.
    created = app_client.put(run_path("b"), json={"estimator": {"kind": "beta"}})
    estimator = created.json()["settings"]["estimator"]
    assert (estimator["decay"], estimator["decay_unit"]) == (0.9, "visit")
    assert estimator["plug_in_from"] == 4.0 and estimator["prior"] == "pooled"


def test_beta_estimator_decays_per_visit_and_plugs_in(app_client: TestClient) -> None:
    estimator = {"kind": "beta", "decay": 0.5, "decay_unit": "visit", "prior": [1.0, 1.0]}
    put = app_client.put(run_path("b"), json={"strategy": "knapsack-bayes", "estimator": estimator})
    assert put.status_code == 201, put.text
    report(app_client, "b", "rep-0", 0, [{"prompt_id": "p", "successes": 6, "trials": 8}])
    report(app_client, "b", "rep-1", 40, [{"prompt_id": "p", "successes": 2, "trials": 8}])
    (stats,) = lookup(app_client, "b", ["p"])
    # Per visit: (6 * 0.5 + 2) * 0.5 + 1 = 3.5 and (2 * 0.5 + 6) * 0.5 + 1 = 4.5.
    assert stats["p_hat"] == pytest.approx(3.5 / 8.0)
    plug = {**estimator, "plug_in_from": 5.0}
    settings = {"strategy": "knapsack-bayes", "estimator": plug}
    assert app_client.put(run_path("b"), json=settings).status_code == 200
    assert _allocate(app_client, "b", 41, ["p", "new"], 20)["p"]["n"] >= 2


@pytest.mark.parametrize(
    "estimator",
    [
        {"kind": "last-visit", "window": 8, "min_observations": 9},
        {"kind": "last-visit", "window": 49},
        {"kind": "beta", "decay_unit": "epoch"},
        {"kind": "beta", "plug_in_from": 0},
    ],
)
def test_bad_estimator_settings_are_422(memory_app_client: TestClient, estimator: dict) -> None:
    response = memory_app_client.put(run_path("bad"), json={"estimator": estimator})
    assert response.status_code == 422, response.text
    assert memory_app_client.get(run_path("bad")).status_code == 404
