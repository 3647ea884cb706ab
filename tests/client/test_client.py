"""KnapsackClient against the real service app, in-process (TestClient)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from knapsack_client import (
    InvalidRequest,
    KnapsackClient,
    PromptResult,
    RunNotFound,
    Unauthorized,
    derive_report_id,
)
from knapsack_client._exceptions import error_from_response
from tests.client.conftest import NO_WAIT, SCOPED_TOKEN, TOKEN

PROMPTS = ["gsm8k-1", "gsm8k-2", "aime-3", "math-4"]


def test_ensure_run_creates_then_keeps_settings(client: KnapsackClient, run_id: str) -> None:
    created = client.ensure_run(run_id, {"min_n": 3, "max_n": 64})
    assert created.run_id == run_id
    assert created.settings.min_n == 3
    again = client.ensure_run(run_id)  # no settings: an existing run keeps its own
    assert again.settings.min_n == 3
    assert again.settings.max_n == 64


def test_ensure_run_without_settings_creates_defaults(client: KnapsackClient, run_id: str) -> None:
    info = client.ensure_run(run_id)
    assert info.settings.strategy == "knapsack"
    assert client.get_run(run_id).run_id == run_id


def test_allocate_spends_the_budget_in_prompt_order(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    answer = client.allocate(run_id, 0, PROMPTS, budget=32)
    assert not answer.degraded
    assert [a.prompt_id for a in answer.allocations] == PROMPTS
    assert sum(a.n for a in answer.allocations) == 32
    assert answer.budget == 32


def test_allocate_balances_shards_over_workers(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    answer = client.allocate(run_id, 0, PROMPTS, budget=32, workers=4)
    assert answer.shards is not None and len(answer.shards) == 4
    loads = [sum(count for _, count in shard) for shard in answer.shards]
    assert sum(loads) == 32  # unseen prompts get default_n = 8 each
    assert max(loads) - min(loads) <= 1


def test_report_is_counted_and_visible_in_lookup(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    ack = client.report(
        run_id,
        0,
        [
            {"prompt_id": "gsm8k-1", "successes": 3, "trials": 8},
            PromptResult(prompt_id="aime-3", successes=0, trials=8),
        ],
    )
    assert ack.accepted == 2 and not ack.duplicate
    stats = {p.prompt_id: p for p in client.lookup(run_id, ["gsm8k-1", "aime-3"]).prompts}
    assert (stats["gsm8k-1"].successes, stats["gsm8k-1"].trials) == (3, 8)
    assert (stats["aime-3"].successes, stats["aime-3"].trials) == (0, 8)


def test_same_step_reported_twice_counts_once(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    results = [{"prompt_id": "gsm8k-1", "successes": 2, "trials": 4}]
    first = client.report(run_id, 5, results, worker="w1")
    second = client.report(run_id, 5, results, worker="w1")
    assert not first.duplicate
    assert second.duplicate
    (stats,) = client.lookup(run_id, ["gsm8k-1"]).prompts
    assert (stats.successes, stats.trials) == (2, 4)


def test_other_worker_or_attempt_counts_again(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    results = [{"prompt_id": "gsm8k-1", "successes": 1, "trials": 2}]
    client.report(run_id, 5, results, worker="w1")
    assert not client.report(run_id, 5, results, worker="w2").duplicate
    assert not client.report(run_id, 5, results, worker="w1", attempt=1).duplicate
    (stats,) = client.lookup(run_id, ["gsm8k-1"]).prompts
    assert (stats.successes, stats.trials) == (3, 6)


def test_explicit_report_id_is_used(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    results = [{"prompt_id": "p", "rewards": [0.0, 1.0, 0.7]}]
    assert not client.report(run_id, 1, results, report_id="mine-1").duplicate
    # Derived ids differ from "mine-1", but the explicit one is recognised again.
    assert client.report(run_id, 1, results, report_id="mine-1").duplicate
    # The same id with other content is refused (409 naming report_id), not dropped.
    with pytest.raises(InvalidRequest) as caught:
        client.report(run_id, 2, results, report_id="mine-1")
    assert caught.value.status == 409 and caught.value.field == "report_id"
    assert derive_report_id(run_id, 1) != "mine-1"


def test_summary_lists_reported_steps(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    client.allocate(run_id, 0, PROMPTS, budget=32)
    client.report(
        run_id,
        0,
        [
            {"prompt_id": "gsm8k-1", "successes": 2, "trials": 4},
            {"prompt_id": "gsm8k-2", "successes": 4, "trials": 4},
        ],
    )
    summary = client.summary(run_id)
    assert summary.run_id == run_id
    (step,) = [s for s in summary.steps if s.step == 0]
    assert step.rollouts == 8
    assert step.all_success_groups == 1


def test_solve_answers_for_known_rates(client: KnapsackClient) -> None:
    answer = client.solve({"success_rates": [0.5, 0.0, 1.0, 0.0625], "budget": 32})
    assert sum(answer.n) == 32
    assert len(answer.n) == 4


def test_run_ids_are_escaped_as_one_path_segment(client: KnapsackClient) -> None:
    for odd in ("team/a b", "..", "x?y#z%"):
        info = client.ensure_run(odd)
        assert info.run_id == odd
        assert client.get_run(odd).run_id == odd


def test_unknown_run_raises_run_not_found(client: KnapsackClient, run_id: str) -> None:
    with pytest.raises(RunNotFound) as caught:
        client.allocate(run_id, 0, PROMPTS)
    assert caught.value.status == 404
    with pytest.raises(RunNotFound):
        client.report(run_id, 0, [{"prompt_id": "p", "successes": 0, "trials": 1}])


def test_deleted_run_is_not_found(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    client.delete_run(run_id)
    with pytest.raises(RunNotFound):
        client.get_run(run_id)


def test_infeasible_budget_is_invalid_request(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id, {"min_n": 2, "max_n": 4})
    with pytest.raises(InvalidRequest) as caught:
        client.allocate(run_id, 0, PROMPTS, budget=1000)
    assert caught.value.status == 422
    assert caught.value.field == "budget"


def test_bad_report_is_refused_before_sending(client: KnapsackClient, run_id: str) -> None:
    client.ensure_run(run_id)
    with pytest.raises(InvalidRequest) as caught:
        client.report(run_id, 0, [{"prompt_id": "p", "successes": 5, "trials": 2}])
    assert caught.value.status is None  # never sent
    assert caught.value.field is not None and caught.value.field.startswith("results.0")


def test_service_422_details_name_the_field(app_http: TestClient, run_id: str) -> None:
    app_http.put(f"/v1/runs/{run_id}", json={})
    response = app_http.post(
        f"/v1/runs/{run_id}/outcomes",
        json={"report_id": "r", "step": 0, "results": [{"prompt_id": "p", "successes": 1}]},
    )
    error = error_from_response(response)
    assert isinstance(error, InvalidRequest)
    assert error.field is not None and error.field.startswith("results.0")


def test_missing_token_is_unauthorized(authed_http: TestClient, run_id: str) -> None:
    with (
        KnapsackClient(http_client=authed_http, token="", retry=NO_WAIT) as anonymous,
        pytest.raises(Unauthorized) as caught,
    ):
        anonymous.ensure_run(run_id)
    assert caught.value.status == 401


def test_token_scoped_to_other_runs_is_forbidden(authed_http: TestClient, run_id: str) -> None:
    with KnapsackClient(http_client=authed_http, token=SCOPED_TOKEN, retry=NO_WAIT) as scoped:
        assert scoped.ensure_run("team-a").run_id == "team-a"
        with pytest.raises(Unauthorized) as caught:
            scoped.ensure_run(run_id)
    assert caught.value.status == 403


def test_token_from_environment_is_sent(
    authed_http: TestClient, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRL_TOKEN", TOKEN)
    with KnapsackClient(http_client=authed_http, retry=NO_WAIT) as from_env:
        assert from_env.ensure_run(run_id).run_id == run_id
