"""The uniform allocation allocate() falls back to, and the derived report ids."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_client import RunSettings, derive_report_id
from knapsack_client._fallback import (
    DEFAULT_GROUP_SIZE,
    balance_shards,
    build_fallback_allocation,
    fallback_budget,
    spread_uniformly,
)


def test_uniform_gives_the_remainder_to_the_lowest_indices() -> None:
    assert spread_uniformly(10, 4) == [3, 3, 2, 2]
    assert spread_uniformly(0, 3) == [0, 0, 0]
    assert spread_uniformly(5, 0) == []


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    workers=st.integers(1, 9),
)
def test_split_shards_cover_every_rollout_within_one(counts: list[int], workers: int) -> None:
    shards = balance_shards(counts, workers, split_groups=True)
    assert len(shards) == workers
    assigned = [0] * len(counts)
    for shard in shards:
        for index, count in shard:
            assert count > 0
            assigned[index] += count
    assert assigned == counts
    loads = [sum(count for _, count in shard) for shard in shards]
    assert max(loads) - min(loads) <= 1


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    workers=st.integers(1, 9),
)
def test_whole_group_shards_never_split_a_group(counts: list[int], workers: int) -> None:
    shards = balance_shards(counts, workers, split_groups=False)
    seen = [index for shard in shards for index, _ in shard]
    assert sorted(seen) == [i for i, count in enumerate(counts) if count > 0]
    for shard in shards:
        for index, count in shard:
            assert count == counts[index]
    loads = [sum(count for _, count in shard) for shard in shards]
    # LPT: no worker exceeds the lightest by more than the largest group.
    assert max(loads) - min(loads) <= max(counts)


def test_budget_comes_from_call_then_run_then_default() -> None:
    run = RunSettings(budget=40, default_n=4)
    assert fallback_budget(3, 12, run) == 12
    assert fallback_budget(3, None, run) == 40
    assert fallback_budget(3, None, RunSettings(default_n=4)) == 12
    assert fallback_budget(3, None, None) == 3 * DEFAULT_GROUP_SIZE


def test_fallback_allocation_is_marked_degraded() -> None:
    answer = build_fallback_allocation(
        7, ["a", "b", "c"], budget=None, settings=None, workers=2, split_groups=True, reason="x"
    )
    assert answer.degraded and answer.reason == "x" and answer.step == 7
    assert [a.n for a in answer.allocations] == [8, 8, 8]
    assert answer.imbalance == 0


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
