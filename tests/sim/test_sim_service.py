"""The simulator against the real service (embedded app, memory store, real HTTP routes)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from knapsack_client import InvalidRequest
from knapsack_trainer.sim import (
    ServiceAllocator,
    SimConfig,
    UnequalSpendError,
    embedded_client,
    simulate,
    strategy_by_name,
)
from knapsack_trainer.sim.service import feasible_budget

SMALL = SimConfig(prompts=320, batch_size=64, steps=12, topics=8)


def _run(client, run_id: str, strategy: str, seed: int, config: SimConfig = SMALL):
    spec = strategy_by_name(strategy)
    allocator = ServiceAllocator(client, run_id, spec.settings)
    policy = spec.policy(config, seed, allocator)
    return simulate(config, seed, policy, spec.budget(config.base_budget))


def test_same_seed_gives_identical_metrics_on_fresh_services() -> None:
    with embedded_client() as client:
        first = _run(client, "det-a", "knapsack", seed=3)
    with embedded_client() as client:
        again = _run(client, "det-a", "knapsack", seed=3)
        other_run_id = _run(client, "det-b", "knapsack", seed=3)
        other_seed = _run(client, "det-c", "knapsack", seed=4)
    assert [asdict(m) for m in first.steps] == [asdict(m) for m in again.steps]
    assert [asdict(m) for m in first.steps] == [asdict(m) for m in other_run_id.steps]
    assert first.final_difficulty == again.final_difficulty
    assert [m.mean_success for m in first.steps] != [m.mean_success for m in other_seed.steps]


def test_allocations_come_from_the_service_and_outcomes_reach_it() -> None:
    with embedded_client() as client:
        result = _run(client, "wired", "knapsack", seed=0)
        summary = client.summary("wired")
        info = client.get_run("wired")
    budget = SMALL.base_budget
    assert all(m.rollouts == budget for m in result.steps)
    assert not any(m.degraded for m in result.steps)
    # Unseen prompts get default_n = 8 at first; once estimates exist the knapsack
    # moves budget away from p = 0 and p = 1 prompts, so group sizes spread out.
    assert result.steps[0].max_group == 8
    assert max(m.max_group for m in result.steps) > 8
    assert max(m.budget_histogram["1-2"] for m in result.steps) > 0
    assert info.counters.rollouts == budget * SMALL.steps
    by_step = {s.step: s for s in summary.steps}
    assert sorted(by_step) == list(range(SMALL.steps))
    for metric in result.steps:
        reported = by_step[metric.step]
        assert reported.rollouts == metric.rollouts
        assert reported.effective_ratio == pytest.approx(metric.effective_ratio)


def test_uniform_run_spends_the_same_group_size_everywhere() -> None:
    with embedded_client() as client:
        result = _run(client, "flat", "uniform-2x", seed=1)
    assert all(m.budget_histogram["9-16"] == SMALL.batch_size for m in result.steps)
    assert all(m.rollouts == 2 * SMALL.base_budget for m in result.steps)


def test_filter_skips_prompts_it_believes_solved_or_hopeless() -> None:
    with embedded_client() as client:
        result = _run(client, "filtered", "skip-extremes", seed=0)
    skipped = [m.budget_histogram["0"] for m in result.steps]
    assert skipped[0] == 0  # nothing is known at the first step
    assert max(skipped) > 0
    assert np.all(np.array([m.rollouts for m in result.steps]) <= SMALL.base_budget)


def test_filter_spends_what_it_can_when_the_budget_exceeds_max_n_per_prompt() -> None:
    # Eight prompts, 512 rollouts: once a few are estimated at p = 0 or 1, the
    # others cannot absorb 512 within max_n = 128; the service answers 422 with
    # the feasible range and the allocator asks again for the most it can spend.
    config = SimConfig(prompts=8, batch_size=8, steps=6, topics=2)
    with embedded_client() as client:
        spec = strategy_by_name("skip-extremes")
        allocator = ServiceAllocator(client, "narrow", spec.settings)
        result = simulate(config, 0, spec.policy(config, 0, allocator), budget=512)
    spent = [m.rollouts for m in result.steps]
    assert all(0 < s < 512 for s in spent)
    assert all(m.max_group <= 128 for m in result.steps)
    assert max(m.max_group for m in result.steps) == 128


def test_coba_served_over_http_spends_the_budget_and_grows_large_groups() -> None:
    with embedded_client() as client:
        result = _run(client, "coba", "coba-service", seed=0)
        info = client.get_run("coba")
    assert info.settings.strategy == "coba"
    assert all(m.rollouts == SMALL.base_budget for m in result.steps)
    assert result.steps[0].max_group == 8  # nothing seen: CoBA spreads evenly
    assert max(m.max_group for m in result.steps) > 16


def test_a_policy_that_promises_the_budget_is_held_to_it() -> None:
    # The old filter rule spends less than its budget; run as if it promised equal
    # spend, the runner refuses the step instead of comparing unequal rollouts.
    config = SimConfig(prompts=8, batch_size=8, steps=6, topics=2)
    with embedded_client() as client:
        allocator = ServiceAllocator(client, "held", strategy_by_name("skip-extremes").settings)
        with pytest.raises(UnequalSpendError, match="spent"):
            simulate(config, 0, allocator, budget=512)


def test_feasible_budget_reads_the_range_from_the_422() -> None:
    error = InvalidRequest(
        "budget: budget 2048 outside the feasible range [30, 1920]", field="budget", status=422
    )
    assert feasible_budget(error, 2048) == 1920
    assert feasible_budget(error, 10) == 30
    unbounded = InvalidRequest("budget 5 outside the feasible range [8, inf]", field="budget")
    assert feasible_budget(unbounded, 5) == 8
    assert feasible_budget(InvalidRequest("bad", field="prompts"), 2048) is None
    assert feasible_budget(InvalidRequest("no range here", field="budget"), 2048) is None
