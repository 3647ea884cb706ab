"""Spreading an allocation's rollouts over W workers (the paper balances them evenly).

`split_groups=True`: the rollouts are laid end to end in prompt order and cut into W
consecutive pieces whose totals differ by at most one; a prompt's group may straddle
a cut (workers then generate parts of the same group). Deterministic, indices
ascending inside each shard, no zero counts.

`split_groups=False`: whole groups only, by the LPT rule (largest group first, to the
least loaded worker; ties to the lower index and the lower worker), which is within
4/3 of the optimal makespan; the reported imbalance is max - min of the totals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knapsack_service.engine import _kernels_balance as kb
from knapsack_service.engine.errors import EngineInputError


@dataclass(frozen=True)
class ShardPlan:
    """Per-worker work lists.

    Attributes:
        shards: W lists of (prompt index, rollouts) pairs, indices ascending.
        imbalance: max - min of the worker totals.
    """

    shards: list[list[tuple[int, int]]]
    imbalance: int


def balance_shards(n: np.ndarray, workers: int, split_groups: bool = True) -> ShardPlan:
    """Assign every prompt's rollouts to workers; prompts with n = 0 appear nowhere.

    Args:
        n: int (M,) rollouts per prompt, >= 0.
        workers: W >= 1.
        split_groups: whether a group may be split across workers.

    Returns:
        ShardPlan with W shards.

    Raises:
        EngineInputError: negative counts (field "n") or workers < 1 (field "workers").
    """
    counts = np.ascontiguousarray(n, dtype=np.int64)
    if counts.ndim != 1 or np.any(counts < 0):
        raise EngineInputError("counts must be a 1-D array of integers >= 0", field="n")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise EngineInputError(f"workers must be >= 1, got {workers!r}", field="workers")
    workers = int(workers)
    if split_groups:
        worker, index, amount = kb.split_consecutive(counts, workers)
    else:
        order = np.argsort(-counts, kind="stable")
        owner = kb.assign_lpt(counts, order, workers)
        keep = counts > 0
        index = np.flatnonzero(keep)
        worker = owner[keep]
        amount = counts[keep]
        by_worker = np.argsort(worker, kind="stable")
        worker, index, amount = worker[by_worker], index[by_worker], amount[by_worker]
    totals = np.bincount(worker, weights=amount, minlength=workers).astype(np.int64)
    bounds = np.searchsorted(worker, np.arange(workers + 1))
    pairs = list(zip(index.tolist(), amount.tolist(), strict=True))
    shards = [pairs[bounds[w] : bounds[w + 1]] for w in range(workers)]
    imbalance = int(totals.max() - totals.min()) if workers else 0
    return ShardPlan(shards=shards, imbalance=imbalance)
