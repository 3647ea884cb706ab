"""The allocation a trainer gets when the service cannot be reached.

Training must not stop because the budget service is down: `allocate()` then
answers what the service's `uniform` strategy would (`shared/API.md`: budget
spread evenly, remainder to the lowest indices), which is plain GRPO's fixed
group size, marked `degraded=True`. Pure Python, so the client keeps to httpx
and pydantic.
"""

from __future__ import annotations

from collections.abc import Sequence

from knapsack_client._models import Allocation, AllocationResponse, RunSettings, Shard

#: Group size per prompt when neither the call nor the run's cached settings give a budget.
DEFAULT_GROUP_SIZE = 8


def spread_uniformly(budget: int, count: int) -> list[int]:
    """Split `budget` rollouts over `count` prompts, the remainder to the lowest indices."""
    if count <= 0:
        return []
    base, remainder = divmod(max(0, budget), count)
    return [base + 1 if index < remainder else base for index in range(count)]


def balance_shards(
    counts: Sequence[int], workers: int, *, split_groups: bool = True
) -> list[Shard]:
    """Assign rollouts to workers as `[index, count]` pairs.

    With `split_groups`, rollouts are laid end to end and cut into `workers`
    pieces whose sizes differ by at most one (a group may straddle two workers,
    as the service allows). Without, each group goes whole to the least loaded
    worker, largest first (LPT), which keeps totals close but not always within one.
    """
    workers = max(1, workers)
    shards: list[Shard] = [[] for _ in range(workers)]
    if split_groups:
        total = sum(counts)
        base, remainder = divmod(total, workers)
        capacities = [base + 1 if worker < remainder else base for worker in range(workers)]
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
    loads = [0] * workers
    order = sorted(range(len(counts)), key=lambda index: (-counts[index], index))
    for index in order:
        if counts[index] == 0:
            continue
        worker = min(range(workers), key=lambda w: (loads[w], w))
        shards[worker].append((index, counts[index]))
        loads[worker] += counts[index]
    for shard in shards:
        shard.sort()
    return shards


def fallback_budget(prompt_count: int, budget: int | None, settings: RunSettings | None) -> int:
    """The budget a degraded allocation spends: the call's, else the run's, else prompts * n."""
    if budget is not None:
        return budget
    if settings is not None and settings.budget is not None:
        return settings.budget
    group_size = settings.default_n if settings is not None else DEFAULT_GROUP_SIZE
    return prompt_count * group_size


def build_fallback_allocation(
    step: int,
    prompts: Sequence[str],
    *,
    budget: int | None,
    settings: RunSettings | None,
    workers: int,
    split_groups: bool,
    reason: str,
) -> AllocationResponse:
    """A uniform AllocationResponse marked degraded, for when the service is unreachable."""
    total = fallback_budget(len(prompts), budget, settings)
    counts = spread_uniformly(total, len(prompts))
    shards = balance_shards(counts, workers, split_groups=split_groups) if workers > 1 else None
    loads = [sum(count for _, count in shard) for shard in shards] if shards else None
    return AllocationResponse(
        step=step,
        allocations=[
            Allocation(prompt_id=prompt, n=count)
            for prompt, count in zip(prompts, counts, strict=True)
        ],
        shards=shards,
        imbalance=(max(loads) - min(loads)) if loads else None,
        strategy="uniform",
        budget=total,
        degraded=True,
        reason=reason,
    )
