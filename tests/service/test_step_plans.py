"""One plan per step over HTTP, on both stores (issue 14 §1).

Measured on the code before plans were kept: after step 5's outcomes arrived, a second
allocation for step 5 with the same prompts and budget differed on 64 of 64 prompts.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from knapsack_client import AllocationRequest
from knapsack_service.step_plans import PLAN_HEADER, decode_plan, encode_plan, identify
from tests.service.test_runs_http import report, run_path

PROMPTS = [f"q-{i:03d}" for i in range(64)]
ESTIMATOR = {"estimator": {"kind": "window", "window": 16, "min_observations": 4}}


def _seed_run(client: TestClient, run_id: str, steps: int = 5) -> None:
    assert client.put(run_path(run_id), json=ESTIMATOR).status_code == 201
    for step in range(steps):
        results = [
            {"prompt_id": p, "successes": (i * 3 + step) % 9, "trials": 8}
            for i, p in enumerate(PROMPTS)
        ]
        report(client, run_id, f"seed-{step}", step, results)


def _allocate(client: TestClient, run_id: str, body: dict) -> tuple[int, str, str | None]:
    response = client.post(run_path(run_id, "/allocations"), json=body)
    return response.status_code, response.text, response.headers.get(PLAN_HEADER)


def test_a_step_is_served_the_same_plan_after_its_outcomes_arrive(
    app_client: TestClient,
) -> None:
    _seed_run(app_client, "r")
    body = {"step": 5, "prompts": PROMPTS, "budget": 512, "workers": 2}
    status, first, made = _allocate(app_client, "r", body)
    assert status == 200 and made == "created"
    # Outcomes of step 5 arrive (one rank was faster): the estimates move a lot.
    results = [
        {"prompt_id": p, "successes": 8 * (i % 2), "trials": 8} for i, p in enumerate(PROMPTS)
    ]
    report(app_client, "r", "step5-rank0", 5, results)
    status, again, replayed = _allocate(app_client, "r", body)
    assert status == 200 and replayed == "replayed"
    assert again == first  # byte for byte: shards, estimates, solve_seconds
    # The next step is planned from the new statistics, so the plan did change.
    status, step6, _ = _allocate(app_client, "r", {**body, "step": 6})
    assert status == 200
    n5 = [a["n"] for a in json.loads(first)["allocations"]]
    n6 = [a["n"] for a in json.loads(step6)["allocations"]]
    assert n5 != n6


def test_a_step_plan_is_counted_once_in_the_summary(app_client: TestClient) -> None:
    _seed_run(app_client, "r", steps=1)
    body = {"step": 3, "prompts": PROMPTS, "budget": 256}
    for _ in range(3):
        assert _allocate(app_client, "r", body)[0] == 200
    assert app_client.get(run_path("r")).json()["counters"]["allocations"] == 1


def test_other_fields_for_planned_prompts_are_a_409_that_changes_nothing(
    app_client: TestClient,
) -> None:
    _seed_run(app_client, "r", steps=1)
    body = {"step": 2, "prompts": PROMPTS, "budget": 256}
    _, first, _ = _allocate(app_client, "r", body)
    for change in ({"budget": 320}, {"workers": 2}, {"min_n": 3}, {"strategy": "uniform"}):
        response = app_client.post(run_path("r", "/allocations"), json={**body, **change})
        assert response.status_code == 409, (change, response.text)
        error = response.json()["error"]
        assert error["code"] == "plan_conflict"
        assert error["details"][0]["field"] == "step"
    assert _allocate(app_client, "r", body)[1] == first
    assert app_client.get(run_path("r")).json()["counters"]["allocations"] == 1


def test_another_prompt_list_for_the_same_step_is_its_own_plan(app_client: TestClient) -> None:
    _seed_run(app_client, "r", steps=1)
    a = {"step": 4, "prompts": PROMPTS[:32], "budget": 128}
    b = {"step": 4, "prompts": PROMPTS[32:], "budget": 128}
    assert _allocate(app_client, "r", a)[2] == "created"
    assert _allocate(app_client, "r", b)[2] == "created"
    assert _allocate(app_client, "r", a)[2] == "replayed"


def test_ranks_asking_at_once_while_reports_land_get_one_plan(app_client: TestClient) -> None:
    _seed_run(app_client, "r")
    body = {"step": 9, "prompts": PROMPTS, "budget": 512, "workers": 4}

    def rank(index: int) -> tuple[int, str]:
        results = [{"prompt_id": p, "successes": index % 9, "trials": 8} for p in PROMPTS]
        report(app_client, "r", f"step9-rank{index}", 9, results)
        status, text, _ = _allocate(app_client, "r", body)
        return status, text

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(rank, range(8)))
    assert {status for status, _ in answers} == {200}
    assert len({text for _, text in answers}) == 1


def test_a_deleted_run_forgets_its_plans(app_client: TestClient) -> None:
    _seed_run(app_client, "r", steps=1)
    body = {"step": 1, "prompts": PROMPTS, "budget": 256}
    _allocate(app_client, "r", body)
    assert app_client.delete(run_path("r")).status_code == 200
    assert app_client.put(run_path("r"), json={}).status_code == 201
    assert _allocate(app_client, "r", {**body, "budget": 512})[2] == "created"


def test_plan_identity_and_encoding() -> None:
    request = AllocationRequest(step=3, prompts=["a", "b\u00e9"], budget=8)
    same = AllocationRequest.model_validate({"budget": 8, "prompts": ["a", "b\u00e9"], "step": 3})
    other = AllocationRequest(step=3, prompts=["a", "b\u00e9"], budget=9)
    reordered = AllocationRequest(step=3, prompts=["b\u00e9", "a"], budget=8)
    assert identify(request) == identify(same)
    assert identify(other).key == identify(request).key
    assert identify(other).request_digest != identify(request).request_digest
    assert identify(reordered).key != identify(request).key
    assert identify(request).key.startswith("3:")
    digest, body = decode_plan(encode_plan(identify(request), b'{"step": 3}'))
    assert digest == identify(request).request_digest and body == b'{"step": 3}'
