"""Shards: totals within one of each other, every rollout placed once."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_service.engine import EngineInputError, balance_shards


def _totals(plan, workers, m):
    per_prompt = np.zeros(m, np.int64)
    totals = []
    for shard in plan.shards:
        indices = [i for i, _ in shard]
        assert indices == sorted(indices)
        assert all(count > 0 for _, count in shard)
        totals.append(sum(c for _, c in shard))
        for i, c in shard:
            per_prompt[i] += c
    assert len(plan.shards) == workers
    return np.array(totals), per_prompt


@given(
    n=st.lists(st.integers(0, 40), min_size=1, max_size=60),
    workers=st.integers(1, 16),
    split=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_shards_cover_allocation(n, workers, split):
    counts = np.array(n, np.int64)
    plan = balance_shards(counts, workers, split_groups=split)
    totals, per_prompt = _totals(plan, workers, counts.size)
    np.testing.assert_array_equal(per_prompt, counts)
    assert plan.imbalance == totals.max() - totals.min()
    if split:
        assert plan.imbalance <= 1
    else:
        # Whole groups: each prompt on one worker; LPT keeps the gap below the largest group.
        owners = {}
        for w, shard in enumerate(plan.shards):
            for i, _ in shard:
                assert i not in owners
                owners[i] = w
        assert plan.imbalance <= max(counts.max(), 0)


def test_split_is_consecutive_and_deterministic():
    plan = balance_shards(np.array([5, 0, 3, 4]), 3)
    assert plan.shards == [[(0, 4)], [(0, 1), (2, 3)], [(3, 4)]]
    assert plan.imbalance == 0
    assert balance_shards(np.array([5, 0, 3, 4]), 3).shards == plan.shards


def test_whole_groups_lpt():
    plan = balance_shards(np.array([8, 7, 6, 5, 4]), 2, split_groups=False)
    assert plan.shards == [[(0, 8), (3, 5), (4, 4)], [(1, 7), (2, 6)]]
    assert plan.imbalance == 4


def test_more_workers_than_rollouts():
    plan = balance_shards(np.array([1, 0, 1]), 4)
    assert plan.shards == [[(0, 1)], [(2, 1)], [], []]
    assert plan.imbalance == 1


def test_invalid_inputs():
    with pytest.raises(EngineInputError) as info:
        balance_shards(np.array([1, -1]), 2)
    assert info.value.field == "n"
    with pytest.raises(EngineInputError) as info:
        balance_shards(np.array([1, 1]), 0)
    assert info.value.field == "workers"
