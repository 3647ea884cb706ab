"""The allocation a trainer gets when the service cannot be reached.

Training must not stop because the budget service is down: `allocate()` then
answers what the service itself answers when it cannot read its store
(`rules.uniform_fallback`): the budget clamped into what the run's min_n and
max_n allow, spread evenly, marked `degraded=True`. The run's settings are those
given to `ensure_run` (or last read from the service), so an outage from the
first step on still honours them. Pure Python, so the client keeps to httpx and
pydantic.
"""

from __future__ import annotations

from collections.abc import Sequence

from knapsack_client import rules
from knapsack_client._models import Allocation, AllocationResponse, RunSettings


def build_fallback_allocation(
    step: int,
    prompts: Sequence[str],
    *,
    budget: int | None,
    min_n: int | None,
    max_n: int | None,
    settings: RunSettings | None,
    workers: int,
    split_groups: bool,
    reason: str,
) -> AllocationResponse:
    """A uniform AllocationResponse marked degraded, for when the service is unreachable.

    `budget`, `min_n` and `max_n` are the call's (None: the run's settings, else
    the service's defaults), as the service resolves them.
    """
    run = settings if settings is not None else RunSettings()
    plan = rules.uniform_fallback(
        len(prompts),
        budget,
        min_n=run.min_n if min_n is None else min_n,
        max_n=run.max_n if max_n is None else max_n,
        run_budget=run.budget,
        default_n=run.default_n,
    )
    counts = rules.spread_evenly(plan.budget, len(prompts))
    shards = None
    if workers > 1:
        split = rules.split_consecutive if split_groups else rules.assign_whole_groups
        shards = split(counts, workers)
    return AllocationResponse(
        step=step,
        allocations=[
            Allocation(prompt_id=prompt, n=count)
            for prompt, count in zip(prompts, counts, strict=True)
        ],
        shards=shards,
        imbalance=rules.shard_imbalance(shards) if shards else None,
        strategy="uniform",
        budget=plan.budget,
        degraded=True,
        reason=reason,
    )
