"""The store protocol and the values that cross it.

The service turns an HTTP outcome report into a `ReportToApply` (counts only: rewards
are already thresholded) before it calls the store, so both stores apply exactly the
same arithmetic (`knapsack_service.store.records`) and never see wire models.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np

#: Largest successes/trials of one group (the wire model's bound, 32-bit signed).
MAX_GROUP_COUNT = 2**31 - 1
#: Largest step number (the wire model's bound).
MAX_STEP = 2**31 - 1
#: How long a report id is remembered for deduplication (both stores): 7 days.
REPORT_ID_RETENTION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class GroupOutcome:
    """One prompt's group in a report.

    Attributes:
        prompt_id: Opaque prompt identifier (any string).
        successes: Rollouts of the group that succeeded.
        trials: Rollouts in the group (at least 1).
        mean_response_tokens: Mean response length of the group, or None if not sent.
        zero_variance: All rewards of the group were equal (with binary rewards:
            successes is 0 or trials); GRPO gets no gradient from such a group.

    """

    prompt_id: str
    successes: int
    trials: int
    mean_response_tokens: float | None = None
    zero_variance: bool = False

    def __post_init__(self) -> None:
        # Both stores rely on this check; the Lua script repeats it so that a bad
        # argument can never half-apply a report.
        if not isinstance(self.prompt_id, str):
            raise TypeError("prompt_id must be a string")
        operator.index(self.successes)  # TypeError for 2.5, numpy integers are fine
        operator.index(self.trials)
        if not 1 <= self.trials <= MAX_GROUP_COUNT:
            raise ValueError(f"trials must be in [1, {MAX_GROUP_COUNT}], got {self.trials}")
        if not 0 <= self.successes <= self.trials:
            raise ValueError(f"successes must be in [0, trials], got {self.successes}")
        tokens = self.mean_response_tokens
        if tokens is not None and not (math.isfinite(tokens) and tokens >= 0.0):
            raise ValueError(f"mean_response_tokens must be finite and >= 0, got {tokens}")


@dataclass(frozen=True)
class ReportToApply:
    """A deduplicated unit of work: every group is applied, or none.

    Attributes:
        report_id: Idempotency key; a report id seen before (within the retention
            window, 7 days) is counted as a duplicate and changes nothing else.
        step: Training step the outcomes belong to.
        decay: The run's per-step Beta evidence decay in (0, 1] (1.0 under the
            window estimator, which ignores the Beta evidence).
        groups: The groups, applied in order (a prompt may appear more than once).
        max_prompts: The most prompts the run may track (KRL_MAX_RUN_PROMPTS); a
            report that would take the run past it is refused whole. None: no limit.

    """

    report_id: str
    step: int
    decay: float
    groups: tuple[GroupOutcome, ...]
    max_prompts: int | None = None

    def __post_init__(self) -> None:
        operator.index(self.step)
        if not 0 <= self.step <= MAX_STEP:
            raise ValueError(f"step must be in [0, {MAX_STEP}], got {self.step}")
        if not (math.isfinite(self.decay) and 0.0 < self.decay <= 1.0):
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")
        if not self.groups:
            raise ValueError("a report needs at least one group")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"max_prompts must be positive, got {self.max_prompts}")

    @cached_property
    def digest(self) -> str:
        """A digest of the content, kept with the report id (see `report_digest`)."""
        return report_digest(self.step, self.groups)


def report_digest(step: int, groups: Sequence[GroupOutcome]) -> str:
    """128-bit BLAKE2b of a report's step and groups, in order, as 32 hex digits.

    The same report_id with other content is a client bug (two ranks sharing ids)
    that would otherwise lose data silently; the digest lets both stores tell a
    retry from a collision. Every field is written unambiguously (prompt ids
    length-prefixed, numbers as decimal text, a missing token mean as `-`), so two
    different reports never share the serialisation. The digest covers the counts
    the store applies, not the wire form: a retry that sends rewards instead of
    counts with the same outcome is still the same report.
    """
    prompts = [group.prompt_id.encode("utf-8", "surrogatepass") for group in groups]
    numbers = [
        f"{group.successes}:{group.trials}:{_tokens_text(group.mean_response_tokens)}:"
        f"{1 if group.zero_variance else 0}"
        for group in groups
    ]
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{int(step)};{','.join(map(str, map(len, prompts)))};".encode("ascii"))
    hasher.update(b"".join(prompts))
    hasher.update(";".join(numbers).encode("ascii"))
    return hasher.hexdigest()


def _tokens_text(tokens: float | None) -> str:
    return "-" if tokens is None else float(tokens).hex()


@dataclass(frozen=True)
class ApplyResult:
    """What `Store.apply_report` did.

    Attributes:
        accepted: Groups applied; for a duplicate, the groups its first application
            applied (the original acknowledgement, so a retry after a lost answer
            learns what happened).
        duplicate: The report id had been applied before with the same content;
            nothing changed but the run's `duplicate_reports` counter.
        step_totals: The report's step after it was applied (keys of
            `STEP_TOTAL_FIELDS`), for per-run gauges; None for a duplicate.

    """

    accepted: int
    duplicate: bool
    step_totals: dict[str, int] | None = None


#: Step counters returned with an applied report (what the per-run gauges need).
STEP_TOTAL_FIELDS = (
    "rollouts",
    "groups",
    "effective_rollouts",
    "all_success_groups",
    "all_failure_groups",
)


@dataclass(frozen=True)
class RateMoments:
    """Run-level moments of the prompts' cumulative success rates r = successes / trials.

    Over the prompts with trials > 0: how many, the sum of r, of r², and of 1 / trials.
    The store updates them with every report, in the same atomic step as the records
    (the change of each touched prompt's terms, `records.rate_moments_change`), so the
    pooled Beta prior (`engine.pooled_beta_prior_from_moments`) is fitted over the whole
    run at the cost of four numbers per run, never over the prompts a request names.
    They are running sums, never recomputed: rounding drifts them by about 1e-16 per
    update, relative to the prompt count, which the fit tolerates (it clamps the tiny
    negative variance such drift can produce). A Redis run written before the moments
    existed reads none (a flat prior) until its next report, which sums them from its
    records once (`lua/apply_report.lua`).

    Attributes:
        count: Prompts with trials > 0 (an integer, kept as a double).
        rate_sum: Sum of their rates.
        rate_square_sum: Sum of their squared rates.
        inverse_trials_sum: Sum of 1 / trials (the binomial noise of the rates).

    """

    count: float = 0.0
    rate_sum: float = 0.0
    rate_square_sum: float = 0.0
    inverse_trials_sum: float = 0.0


#: Moments of a run without reports (or a batch read outside any run).
NO_MOMENTS = RateMoments()


@dataclass(frozen=True)
class PromptBatch:
    """Statistics of a batch of prompts, one entry per requested id, in request order.

    Attributes:
        successes: int64, cumulative successes (never decayed).
        trials: int64, cumulative trials.
        ring: int64, the last <= 48 outcomes, newest in bit 0, 1 = success; only the
            lowest `min(trials, 48)` bits are meaningful.
        beta_successes: float64, Beta evidence for success, decayed to `beta_step`.
        beta_failures: float64, Beta evidence for failure, decayed to `beta_step`.
        beta_step: int64, step the Beta evidence is decayed to (-1 = never seen).
        last_step: int64, largest step reported (-1 = never seen).
        mean_tokens: float64, trial-weighted mean response tokens (NaN = unknown).
        seen: bool, the prompt has at least one reported group.
        visit_successes: int64, successes of the last visit (the groups of last_step).
        visit_trials: int64, trials of the last visit.
        visit_beta_successes: float64, Beta evidence for success, decayed per visit.
        visit_beta_failures: float64, Beta evidence for failure, decayed per visit.
        run_moments: The run's `RateMoments`, read with the records (one round trip):
            what the pooled prior is fitted from, whatever the batch holds.

    """

    successes: np.ndarray
    trials: np.ndarray
    ring: np.ndarray
    beta_successes: np.ndarray
    beta_failures: np.ndarray
    beta_step: np.ndarray
    last_step: np.ndarray
    mean_tokens: np.ndarray
    seen: np.ndarray
    visit_successes: np.ndarray
    visit_trials: np.ndarray
    visit_beta_successes: np.ndarray
    visit_beta_failures: np.ndarray
    run_moments: RateMoments = NO_MOMENTS

    def __len__(self) -> int:
        return int(self.seen.shape[0])


@dataclass(frozen=True)
class PlanClaim:
    """What `Store.claim_plan` did.

    Attributes:
        created: This call's plan was kept (no plan was kept under the key before).
        plan: The plan kept under the key: this call's, or the earlier one, byte for byte.

    """

    created: bool
    plan: bytes


@dataclass(frozen=True)
class StoreMemory:
    """How much memory the backend uses and may use (what the memory alert watches).

    Attributes:
        used_bytes: Memory in use (Redis `used_memory`; on a cluster, the fullest
            node's).
        max_bytes: Its limit (`maxmemory`); 0 when none is set.

    """

    used_bytes: int
    max_bytes: int


@runtime_checkable
class Store(Protocol):
    """Per-run settings and per-prompt success statistics (Redis or memory).

    Every method may raise `StoreUnavailable`; the ones that need an existing run
    raise `RunNotFound` when its settings are missing.
    """

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the backend answers."""
        ...

    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...

    async def put_settings(self, run_id: str, settings_json: str) -> bool:
        """Create or replace a run's settings; True if the run was created."""
        ...

    async def get_settings(self, run_id: str) -> str | None:
        """The run's settings JSON, or None if the run does not exist."""
        ...

    async def read_batch(
        self, run_id: str, prompt_ids: Sequence[str]
    ) -> tuple[str | None, PromptBatch]:
        """Settings and statistics of `prompt_ids`, read in one round trip."""
        ...

    async def apply_report(self, run_id: str, report: ReportToApply) -> ApplyResult:
        """Apply a report all or nothing, exactly once per report id."""
        ...

    async def record_allocation(
        self, run_id: str, step: int, increments: Mapping[str, int]
    ) -> None:
        """Add an allocation's counter increments to its step summary; count it in the run.

        The increments (budget histogram, difficulty bands) come from
        `knapsack_service.summaries.allocation_increments`: the store only adds them.
        """
        ...

    async def claim_plan(self, run_id: str, key: str, plan: bytes) -> PlanClaim:
        """Keep `plan` under `key` unless a plan is kept there already (first one wins).

        One atomic step, so ranks asking at the same moment all end up with the same
        plan. The bytes are opaque to the store (`knapsack_service.step_plans` writes
        them); a plan expires with the run's retention window, as report ids do, and
        goes with `delete_run`.
        """
        ...

    async def read_counters(self, run_id: str) -> dict[str, int | None]:
        """The run's counters (keys of `RunCounters`; `last_step` None if no report)."""
        ...

    async def read_summary(
        self, run_id: str, last: int | None = None
    ) -> list[tuple[int, dict[str, int]]]:
        """(step, raw counters) of the last `last` steps (or all), ascending step."""
        ...

    async def delete_run(self, run_id: str) -> bool:
        """Remove every key of the run; True if anything existed."""
        ...

    async def list_runs(self) -> list[str]:
        """Ids of the runs created and not deleted, sorted."""
        ...

    async def memory_usage(self) -> StoreMemory | None:
        """The backend's memory use and limit; None where it has no separate memory."""
        ...


__all__ = [
    "MAX_GROUP_COUNT",
    "MAX_STEP",
    "NO_MOMENTS",
    "REPORT_ID_RETENTION_SECONDS",
    "ApplyResult",
    "GroupOutcome",
    "PlanClaim",
    "PromptBatch",
    "RateMoments",
    "ReportToApply",
    "Store",
    "StoreMemory",
    "report_digest",
]
