"""The embedded store: one process, no Redis (used when KRL_REDIS_URL is unset).

Records are kept packed exactly as in Redis and updated by `records.py`, so a run
behaves the same in both stores, down to the float32 rounding of its Beta evidence.
A `threading.Lock` (not an asyncio one) guards the state: no critical section awaits,
and the store stays correct when called from several event loops or threads (a
`TestClient` runs the app in its own thread).

Report ids live in an `OrderedDict` in the order they were applied, so forgetting
the ones older than the dedup window pops from its front: constant time per report,
however many ids the run holds (rebuilding the table each time was quadratic).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from knapsack_client.rules import RUN_COUNTERS
from knapsack_service.store.base import (
    NO_MOMENTS,
    REPORT_ID_RETENTION_SECONDS,
    STEP_TOTAL_FIELDS,
    ApplyResult,
    PlanClaim,
    PromptBatch,
    RateMoments,
    ReportToApply,
)
from knapsack_service.store.errors import (
    PromptLimitReached,
    ReportConflict,
    ReportExpired,
    RunNotFound,
)
from knapsack_service.store.records import (
    EMPTY_RECORD_BYTES,
    add_moments,
    apply_groups_to_records,
    decode_records,
    rate_moments_change,
    summarise_groups,
)


@dataclass(frozen=True, slots=True)
class _Applied:
    """What the store remembers of an applied report id, within the dedup window."""

    applied_at: float
    step: int
    digest: str
    accepted: int


@dataclass
class _Run:
    settings: str
    counters: Counter[str] = field(default_factory=Counter)
    last_step: int | None = None
    records: dict[str, bytes] = field(default_factory=dict)
    #: Moments of the prompts' cumulative rates, updated with the records.
    moments: RateMoments = NO_MOMENTS
    steps: dict[int, Counter[str]] = field(default_factory=dict)
    report_ids: OrderedDict[str, _Applied] = field(default_factory=OrderedDict)
    #: Largest step of a report id forgotten at the end of the dedup window: reports
    #: at or below it are refused (`ReportExpired`), since a replay of a forgotten
    #: report could no longer be told from a new one.
    closed_step: int = -1
    # plan key -> (unix time kept, plan), oldest first: expiry pops from the front.
    plans: OrderedDict[str, tuple[float, bytes]] = field(default_factory=OrderedDict)

    def forget_report_ids_before(self, horizon: float) -> None:
        """Drop report ids applied before `horizon`, oldest first."""
        report_ids = self.report_ids
        while report_ids:
            oldest = next(iter(report_ids.values()))
            if oldest.applied_at >= horizon:
                return
            report_ids.popitem(last=False)
            self.closed_step = max(self.closed_step, oldest.step)


class MemoryStore:
    """`Store` kept in this process's memory; lost when the process exits."""

    def __init__(self, report_id_retention_seconds: int = REPORT_ID_RETENTION_SECONDS) -> None:
        """Create an empty store.

        Args:
            report_id_retention_seconds: How long report ids are kept for dedup.

        """
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._retention = report_id_retention_seconds

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def ping(self) -> None:
        """Always answers: memory is always there."""

    async def close(self) -> None:
        """Nothing to release (the data stays until the store is dropped)."""

    async def put_settings(self, run_id: str, settings_json: str) -> bool:
        """Create or replace a run's settings; True if the run was created."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                self._runs[run_id] = _Run(settings=settings_json)
                return True
            run.settings = settings_json
            return False

    async def get_settings(self, run_id: str) -> str | None:
        """The run's settings JSON, or None."""
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else run.settings

    async def read_batch(
        self, run_id: str, prompt_ids: Sequence[str]
    ) -> tuple[str | None, PromptBatch]:
        """Settings and the records of `prompt_ids` (unseen ids read as empty)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                blob = EMPTY_RECORD_BYTES * len(prompt_ids)
                return None, decode_records(blob)
            records = run.records
            blob = b"".join([records.get(pid, EMPTY_RECORD_BYTES) for pid in prompt_ids])
            return run.settings, decode_records(blob, run.moments)

    async def apply_report(self, run_id: str, report: ReportToApply) -> ApplyResult:
        """Apply a report all or nothing, once per report id (same semantics as Redis)."""
        with self._lock:
            run = self._run(run_id)
            now = time.time()
            run.forget_report_ids_before(now - self._retention)
            known = run.report_ids.get(report.report_id)
            if known is not None:
                if known.digest != report.digest:
                    raise ReportConflict(report.report_id)
                run.counters["duplicate_reports"] += 1
                return ApplyResult(accepted=known.accepted, duplicate=True)
            if report.step <= run.closed_step:
                raise ReportExpired(report.step, run.closed_step)
            # Compute everything first: an error leaves the run untouched.
            updated = apply_groups_to_records(run.records, report.groups, report.step, report.decay)
            if report.max_prompts is not None:
                new = sum(1 for prompt_id in updated if prompt_id not in run.records)
                if new and len(run.records) + new > report.max_prompts:
                    raise PromptLimitReached(report.max_prompts, new)
            totals = summarise_groups(report.groups)
            change = rate_moments_change(run.records, updated)

            run.moments = add_moments(run.moments, change)
            run.records.update(updated)
            summary = run.steps.setdefault(report.step, Counter())
            summary.update({name: value for name, value in totals.items() if value})
            run.counters["reports"] += 1
            run.counters["results"] += len(report.groups)
            run.counters["rollouts"] += totals["rollouts"]
            run.counters["successes"] += totals["successes"]
            if run.last_step is None or report.step > run.last_step:
                run.last_step = report.step
            run.report_ids[report.report_id] = _Applied(
                applied_at=now, step=report.step, digest=report.digest, accepted=len(report.groups)
            )
            step_totals = {name: int(summary.get(name, 0)) for name in STEP_TOTAL_FIELDS}
            return ApplyResult(
                accepted=len(report.groups), duplicate=False, step_totals=step_totals
            )

    async def record_allocation(
        self, run_id: str, step: int, increments: Mapping[str, int]
    ) -> None:
        """Add an allocation's increments to its step summary."""
        with self._lock:
            run = self._run(run_id)
            run.counters["allocations"] += 1
            run.steps.setdefault(int(step), Counter()).update(increments)

    async def claim_plan(self, run_id: str, key: str, plan: bytes) -> PlanClaim:
        """Keep `plan` under `key` unless one is kept already (first one wins)."""
        with self._lock:
            run = self._run(run_id)
            now = time.time()
            plans = run.plans
            while plans and next(iter(plans.values()))[0] < now - self._retention:
                plans.popitem(last=False)
            kept = plans.get(key)
            if kept is not None:
                return PlanClaim(created=False, plan=kept[1])
            plans[key] = (now, bytes(plan))
            return PlanClaim(created=True, plan=plan)

    async def read_counters(self, run_id: str) -> dict[str, int | None]:
        """The run's counters; raises `RunNotFound` for a missing run."""
        with self._lock:
            run = self._run(run_id)
            counters: dict[str, int | None] = {name: run.counters[name] for name in RUN_COUNTERS}
            counters["prompts"] = len(run.records)
            counters["last_step"] = run.last_step
            return counters

    async def read_summary(
        self, run_id: str, last: int | None = None
    ) -> list[tuple[int, dict[str, int]]]:
        """(step, raw counters) of the last `last` steps (or all), ascending step."""
        if last is not None and last < 0:
            raise ValueError("last must be non-negative")
        with self._lock:
            run = self._run(run_id)
            steps = sorted(run.steps)
            if last is not None:
                steps = steps[len(steps) - last :] if last else []
            return [(step, dict(run.steps[step])) for step in steps]

    async def delete_run(self, run_id: str) -> bool:
        """Forget the run; True if it existed."""
        with self._lock:
            return self._runs.pop(run_id, None) is not None

    async def list_runs(self) -> list[str]:
        """Ids of every run created and not deleted, sorted."""
        with self._lock:
            return sorted(self._runs)

    async def memory_usage(self) -> None:
        """None: the runs live in the service's own memory (watched as the process's)."""
        return None


__all__ = ["MemoryStore"]
