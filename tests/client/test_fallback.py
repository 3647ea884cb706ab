"""The uniform allocation allocate() falls back to, and the derived report ids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_client import RunSettings, derive_report_id, rules
from knapsack_client._fallback import build_fallback_allocation


def test_uniform_gives_the_remainder_to_the_lowest_indices() -> None:
    assert rules.spread_evenly(10, 4) == [3, 3, 2, 2]
    assert rules.spread_evenly(0, 3) == [0, 0, 0]
    assert rules.spread_evenly(5, 0) == []


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    workers=st.integers(1, 9),
)
def test_split_shards_cover_every_rollout_within_one(counts: list[int], workers: int) -> None:
    shards = rules.split_consecutive(counts, workers)
    assert len(shards) == workers
    assigned = [0] * len(counts)
    for shard in shards:
        for index, count in shard:
            assert count > 0
            assigned[index] += count
    assert assigned == counts
    loads = [sum(count for _, count in shard) for shard in shards]
    assert loads == sorted(loads, reverse=True)  # the remainder goes to the first workers
    assert max(loads) - min(loads) <= 1
    # Consecutive: reading the shards in worker order walks the prompts in order.
    walk = [index for shard in shards for index, _ in shard]
    assert walk == sorted(walk)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    workers=st.integers(1, 9),
)
def test_whole_group_shards_never_split_a_group(counts: list[int], workers: int) -> None:
    shards = rules.assign_whole_groups(counts, workers)
    seen = [index for shard in shards for index, _ in shard]
    assert sorted(seen) == [i for i, count in enumerate(counts) if count > 0]
    for shard in shards:
        for index, count in shard:
            assert count == counts[index]
    loads = [sum(count for _, count in shard) for shard in shards]
    # LPT: no worker exceeds the lightest by more than the largest group.
    assert max(loads) - min(loads) <= max(counts)


def test_split_refuses_no_workers_and_negative_counts() -> None:
    with pytest.raises(ValueError, match="workers"):
        rules.split_consecutive([1, 2], 0)
    with pytest.raises(ValueError, match="negative"):
        rules.split_consecutive([1, -2], 2)


def test_budget_comes_from_call_then_run_then_default() -> None:
    assert rules.resolve_budget(3, 12, 40, 4) == 12
    assert rules.resolve_budget(3, None, 40, 4) == 40
    assert rules.resolve_budget(3, None, None, 4) == 12


def test_uniform_fallback_clamps_the_budget_into_the_run_bounds() -> None:
    assert rules.uniform_fallback(3, 300, min_n=2, max_n=16).budget == 48
    assert rules.uniform_fallback(3, 1, min_n=2, max_n=16).budget == 6
    assert rules.uniform_fallback(3, 20, min_n=2, max_n=16).budget == 20
    # min_n above max_n yields to max_n rather than refusing: training goes on.
    assert rules.uniform_fallback(2, None, min_n=9, max_n=4) == (8, 4, 4)
    assert rules.uniform_fallback(2, None, min_n=2, max_n=64, default_n=5).budget == 10


def test_fallback_allocation_is_marked_degraded() -> None:
    answer = build_fallback_allocation(
        7,
        ["a", "b", "c"],
        budget=None,
        min_n=None,
        max_n=None,
        settings=None,
        workers=2,
        split_groups=True,
        reason="x",
    )
    assert answer.degraded and answer.reason == "x" and answer.step == 7
    assert [a.n for a in answer.allocations] == [rules.DEFAULT_GROUP_SIZE] * 3
    assert answer.imbalance == 0


def test_fallback_allocation_honours_the_run_settings_and_the_call() -> None:
    run = RunSettings(max_n=16)
    common = {"workers": 1, "split_groups": True, "reason": "x"}
    answer = build_fallback_allocation(
        0, ["a", "b", "c"], budget=300, min_n=None, max_n=None, settings=run, **common
    )
    assert [a.n for a in answer.allocations] == [16, 16, 16] and answer.budget == 48
    # The call's own bounds win over the run's, as on the service.
    answer = build_fallback_allocation(
        0, ["a", "b", "c"], budget=300, min_n=None, max_n=10, settings=run, **common
    )
    assert [a.n for a in answer.allocations] == [10, 10, 10]


def test_report_id_is_deterministic_and_distinguishes_its_inputs() -> None:
    base = derive_report_id("run", 3, "w0", 0)
    assert base == derive_report_id("run", 3, "w0", 0)
    assert base.startswith("krl-")
    others = {
        derive_report_id("run2", 3, "w0", 0),
        derive_report_id("run", 4, "w0", 0),
        derive_report_id("run", 3, "w1", 0),
        derive_report_id("run", 3, "w0", 1),
        derive_report_id("run3", 3, "w0", 0),
    }
    assert base not in others and len(others) == 5
    # No ambiguity from concatenation: ("a-1", 2) and ("a", 12) differ.
    assert derive_report_id("a-1", 2) != derive_report_id("a", 12)


@settings(max_examples=80, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    workers=st.integers(1, 9),
    split_groups=st.booleans(),
)
def test_client_shards_are_the_services_shards(
    counts: list[int], workers: int, split_groups: bool
) -> None:
    """The service's compiled balancing and the client's rule cut the same shards."""
    import numpy as np

    from knapsack_service.engine import balance_shards

    split = rules.split_consecutive if split_groups else rules.assign_whole_groups
    plan = balance_shards(np.array(counts), workers, split_groups)
    assert split(counts, workers) == plan.shards
    assert rules.shard_imbalance(plan.shards) == plan.imbalance
