"""Domain rules the client and the service share, each stated once.

The service imports this module (the client never imports the service), so a
rule written here cannot drift between the trainer's offline fallback, the
service's degraded answer, the engine and the GRPO worker. Pure Python without
dependencies: the client keeps to httpx and pydantic, and the numpy-bound
service wraps the results where it needs arrays.

- `RING_OUTCOMES`: how many of a prompt's latest outcomes the store keeps (a
  48-bit ring), hence the largest window a window estimator may ask for.
- `DEFAULT_SUCCESS_THRESHOLD`: a reward counts as a success at or above it.
- `DEFAULT_GROUP_SIZE`: rollouts per prompt when nothing else sets a budget.
- `RUN_COUNTERS`: the counters every store keeps per run.
- `resolve_budget`, `uniform_fallback`: what a step spends, and the uniform
  allocation given when the service (or its store) cannot be asked.
- `spread_evenly`, `split_consecutive`, `assign_whole_groups`: the even spread
  and the two ways of sharding an allocation over workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

#: Outcomes kept per prompt (a 48-bit ring, newest in bit 0): a window estimator's
#: `window` and `min_observations` may not exceed it.
RING_OUTCOMES = 48
#: A reward at or above this counts as a success when a report sends rewards.
DEFAULT_SUCCESS_THRESHOLD = 0.5
#: Rollouts per prompt when neither the call nor the run sets a budget (`default_n`).
DEFAULT_GROUP_SIZE = 8
#: Cumulative counters of a run, in the order the stores read them.
RUN_COUNTERS: tuple[str, ...] = (
    "reports",
    "duplicate_reports",
    "results",
    "rollouts",
    "successes",
    "allocations",
)

#: One worker's work list: (prompt index, rollouts) pairs, indices ascending.
Shard = list[tuple[int, int]]


class UniformPlan(NamedTuple):
    """The uniform allocation a degraded answer spends: budget and the bounds it honours."""

    budget: int
    min_n: int
    max_n: int


def spread_evenly(total: int, count: int) -> list[int]:
    """`total` split over `count` slots, sizes differing by at most one, remainder first.

    The lowest indices take the remainder, so the answer is deterministic and the
    same as the service's `uniform` strategy (API.md).
    """
    if count <= 0:
        return []
    base, remainder = divmod(max(0, total), count)
    return [base + 1 if index < remainder else base for index in range(count)]


def resolve_budget(
    prompt_count: int, budget: int | None, run_budget: int | None, default_n: int
) -> int:
    """The rollouts a step spends: the call's budget, else the run's, else prompts * default_n."""
    if budget is not None:
        return budget
    if run_budget is not None:
        return run_budget
    return prompt_count * default_n


def uniform_fallback(
    prompt_count: int,
    budget: int | None,
    *,
    min_n: int,
    max_n: int,
    run_budget: int | None = None,
    default_n: int = DEFAULT_GROUP_SIZE,
) -> UniformPlan:
    """The uniform allocation for when the estimates cannot be read.

    Training must go on, so a budget outside what the run allows is clamped into
    `[prompts * min_n, prompts * max_n]` instead of refused: budget 300 over 3
    prompts with max_n 16 spends 48, 16 each. `min_n` above `max_n` yields to
    `max_n`. Group sizes are then `spread_evenly(plan.budget, prompt_count)`.
    """
    min_n = min(min_n, max_n)
    total = resolve_budget(prompt_count, budget, run_budget, default_n)
    total = min(max(total, prompt_count * min_n), prompt_count * max_n)
    return UniformPlan(budget=total, min_n=min_n, max_n=max_n)


def split_consecutive(counts: Sequence[int], workers: int) -> list[Shard]:
    """Lay the rollouts end to end in prompt order and cut them into `workers` pieces.

    Piece sizes differ by at most one (the larger ones first); a prompt's group may
    straddle a cut, so workers then generate parts of the same group. Prompts with
    no rollouts appear nowhere. The service's `split_groups=True` balancing
    computes the same cut (in a compiled kernel); a worker that got an allocation
    without shards (one worker, or an offline fallback) cuts it here.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if any(count < 0 for count in counts):
        raise ValueError(f"counts must not be negative, got {list(counts)}")
    capacities = spread_evenly(sum(counts), workers)
    shards: list[Shard] = [[] for _ in range(workers)]
    worker = 0
    for index, count in enumerate(counts):
        left = count
        while left > 0:
            while capacities[worker] == 0:
                worker += 1
            take = min(left, capacities[worker])
            shards[worker].append((index, take))
            capacities[worker] -= take
            left -= take
    return shards


def assign_whole_groups(counts: Sequence[int], workers: int) -> list[Shard]:
    """Give each group whole to a worker: largest first, to the least loaded (LPT).

    Ties go to the lower prompt index and the lower worker, as in the service's
    `split_groups=False` balancing. Totals stay within 4/3 of the best makespan,
    not always within one rollout.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    shards: list[Shard] = [[] for _ in range(workers)]
    loads = [0] * workers
    for index in sorted(range(len(counts)), key=lambda i: (-counts[i], i)):
        if counts[index] <= 0:
            continue
        worker = min(range(workers), key=lambda w: (loads[w], w))
        shards[worker].append((index, counts[index]))
        loads[worker] += counts[index]
    for shard in shards:
        shard.sort()
    return shards


def shard_imbalance(shards: Sequence[Shard]) -> int:
    """Largest minus smallest worker total."""
    loads = [sum(count for _, count in shard) for shard in shards]
    return max(loads) - min(loads) if loads else 0


__all__ = [
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_SUCCESS_THRESHOLD",
    "RING_OUTCOMES",
    "RUN_COUNTERS",
    "Shard",
    "UniformPlan",
    "assign_whole_groups",
    "resolve_budget",
    "shard_imbalance",
    "split_consecutive",
    "spread_evenly",
    "uniform_fallback",
]
