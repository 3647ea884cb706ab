"""Reports in, summaries out: reports -> groups -> store; per-step summaries; counting.

Allocations are counted here too, after their answer (metrics and the step summary).

Non-binary rewards are turned into counts here, with the run's
`success_threshold`, so the store only ever sees (successes, trials) and a
zero-variance flag: a group whose rewards are all equal gives GRPO no gradient
whatever the threshold says (API.md, "Runs").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool

from knapsack_client import (
    BetaEstimator,
    OutcomeAck,
    OutcomeReport,
    PromptResult,
    StepSummary,
)
from knapsack_service.bands import DIFFICULTY_METRIC_LABELS, difficulty_band
from knapsack_service.runs import check_count, check_step, read_settings
from knapsack_service.state import ServiceState
from knapsack_service.store import (
    ApplyResult,
    GroupOutcome,
    ReportRefused,
    ReportToApply,
    RunNotFound,
    StoreUnavailable,
)
from knapsack_service.summaries import allocation_increments, summary_from_fields

logger = logging.getLogger("knapsack_service.reporting")


def to_group(result: PromptResult, success_threshold: float) -> GroupOutcome:
    """One prompt's group as counts."""
    if result.rewards is not None:
        rewards = result.rewards
        successes = sum(1 for reward in rewards if reward >= success_threshold)
        trials = len(rewards)
        zero_variance = max(rewards) == min(rewards)
    else:
        successes, trials = result.successes or 0, result.trials or 0
        zero_variance = successes in (0, trials)
    return GroupOutcome(
        prompt_id=result.prompt_id,
        successes=successes,
        trials=trials,
        mean_response_tokens=result.mean_response_tokens,
        zero_variance=zero_variance,
    )


def to_groups(report: OutcomeReport, success_threshold: float) -> tuple[GroupOutcome, ...]:
    """Every group of a report, in order.

    The counts case (no rewards) is `to_group` inlined with positional arguments: a
    report carries hundreds of groups and this loop runs on every one of them.
    """
    make = GroupOutcome
    groups = []
    append = groups.append
    for result in report.results:
        if result.rewards is None:
            successes, trials = result.successes or 0, result.trials or 0
            append(
                make(
                    result.prompt_id,
                    successes,
                    trials,
                    result.mean_response_tokens,
                    successes == 0 or successes == trials,
                )
            )
        else:
            append(to_group(result, success_threshold))
    return tuple(groups)


#: Reports with more results than this are turned into groups in the threadpool.
INLINE_GROUPS = 1024


async def apply_report(state: ServiceState, run_id: str, report: OutcomeReport) -> OutcomeAck:
    """Apply a report once, all or nothing (deduplicated by report_id), and count it."""
    limits = state.settings
    check_count(limits, "results", len(report.results))
    settings = await read_settings(state.store, state.known_runs, run_id)
    await check_step(state.store, state.known_runs, limits, run_id, report.step)
    decay = settings.estimator.decay if isinstance(settings.estimator, BetaEstimator) else 1.0
    if len(report.results) <= INLINE_GROUPS:
        groups = to_groups(report, settings.success_threshold)
    else:  # rewards are thresholded one by one: millions of them in the largest report
        groups = await run_in_threadpool(to_groups, report, settings.success_threshold)
    to_apply = ReportToApply(
        report_id=report.report_id,
        step=report.step,
        decay=decay,
        groups=groups,
        max_prompts=limits.max_run_prompts,
    )
    metrics = state.metrics
    try:
        result = await state.store.apply_report(run_id, to_apply)
    except (StoreUnavailable, ReportRefused):  # the API answers 503 / 4xx
        metrics.reports.labels("rejected").inc()
        raise
    metrics.store_up.set(1)
    state.known_runs.note_step(run_id, report.step)
    if result.duplicate:
        metrics.reports.labels("duplicate").inc()
        metrics.duplicate_reports.inc()
    else:
        metrics.reports.labels("applied").inc()
        metrics.outcomes.inc(sum(group.trials for group in groups))
        _update_run_gauges(state, run_id, report.step, result)
    return OutcomeAck(accepted=result.accepted, duplicate=result.duplicate)


def _update_run_gauges(state: ServiceState, run_id: str, step: int, result: ApplyResult) -> None:
    """Per-run gauges from the step's totals as the store holds them after this report."""
    totals = result.step_totals
    if not totals:
        return
    metrics = state.metrics
    label = metrics.run_label(run_id)
    rollouts = totals.get("rollouts", 0)
    groups = totals.get("groups", 0)
    if rollouts:
        metrics.run_effective_ratio.labels(label).set(
            totals.get("effective_rollouts", 0) / rollouts
        )
    if groups:
        metrics.run_all_success.labels(label).set(totals.get("all_success_groups", 0) / groups)
        metrics.run_all_failure.labels(label).set(totals.get("all_failure_groups", 0) / groups)
    metrics.run_last_step.labels(label).set(step)


#: Summaries of more steps than this are encoded in the threadpool (about 1 ms per 100).
INLINE_SUMMARY_STEPS = 2000


async def run_summary(state: ServiceState, run_id: str, last: int | None) -> bytes:
    """`RunSummary` JSON, including every allocation this process has answered."""
    await wait_for_summary(state, run_id)
    rows = await state.store.read_summary(run_id, last)
    if len(rows) <= INLINE_SUMMARY_STEPS:
        return _summary_json(run_id, rows)
    return await run_in_threadpool(_summary_json, run_id, rows)


def _summary_json(run_id: str, rows: list[tuple[int, dict[str, int]]]) -> bytes:
    steps = [
        summarise_step(summary_from_fields(step, fields)).model_dump(mode="json")
        for step, fields in rows
    ]
    return orjson.dumps({"run_id": run_id, "steps": steps})


def summarise_step(row: dict[str, Any]) -> StepSummary:
    """Raw per-step counters -> the contract's step summary with shares."""
    rollouts = int(row.get("rollouts", 0))
    groups = int(row.get("groups", 0))
    return StepSummary(
        **row,
        effective_ratio=(row.get("effective_rollouts", 0) / rollouts) if rollouts else None,
        all_success_share=(row.get("all_success_groups", 0) / groups) if groups else None,
        all_failure_share=(row.get("all_failure_groups", 0) / groups) if groups else None,
    )


# --------------------------------------------------------------------------- allocations


def record_store_error(state: ServiceState, operation: str, error: Exception) -> None:
    """Count a failed store call and mark the store down until a call succeeds."""
    state.metrics.store_errors.labels(operation).inc()
    state.metrics.store_up.set(0)
    logger.warning("store error", extra={"operation": operation, "error": repr(error)})


def count_allocation(
    state: ServiceState, strategy: str, n: np.ndarray, p_hat: np.ndarray, *, degraded: bool
) -> None:
    """Count an answered allocation in the Prometheus counters, by difficulty band."""
    metrics = state.metrics
    metrics.allocations.labels(strategy, "true" if degraded else "false").inc()
    metrics.rollouts_allocated.labels(strategy).inc(int(n.sum()))
    bands = difficulty_band(p_hat)
    prompts = np.bincount(bands, minlength=len(DIFFICULTY_METRIC_LABELS)).tolist()
    rollouts = np.bincount(bands, weights=n, minlength=len(DIFFICULTY_METRIC_LABELS)).tolist()
    for label, count, total in zip(DIFFICULTY_METRIC_LABELS, prompts, rollouts, strict=True):
        if count:
            metrics.prompts_by_difficulty.labels(label).inc(count)
            metrics.rollouts_by_difficulty.labels(label).inc(int(total))


def record_allocation_after_answer(
    state: ServiceState, run_id: str, step: int, strategy: str, n: np.ndarray, p_hat: np.ndarray
) -> None:
    """Count the allocation in the metrics and the step summary after the answer.

    Neither changes the answer, so both run in a task that starts once the handler
    has returned (about 0.15 ms of a 1024-prompt answer's path, plus a round trip).

    The write runs as a task; `summary_writes` keeps it until it finishes, and a
    summary read of the run awaits the run's pending writes first (`wait_for_summary`),
    so this process never shows a summary older than its own answers.
    """
    task = asyncio.ensure_future(_write_summary(state, run_id, step, strategy, n, p_hat))
    pending = state.summary_writes.setdefault(run_id, set())
    pending.add(task)

    def done(finished: asyncio.Task[None]) -> None:
        pending.discard(finished)
        if not pending and state.summary_writes.get(run_id) is pending:
            del state.summary_writes[run_id]

    task.add_done_callback(done)


async def _write_summary(
    state: ServiceState, run_id: str, step: int, strategy: str, n: np.ndarray, p_hat: np.ndarray
) -> None:
    count_allocation(state, strategy, n, p_hat, degraded=False)
    try:
        await state.store.record_allocation(run_id, step, allocation_increments(n, p_hat))
    except StoreUnavailable as exc:  # the answer stands; only the summary misses it
        record_store_error(state, "record_allocation", exc)
    except RunNotFound:  # deleted after the answer: nothing left to count in
        pass


async def wait_for_summary(state: ServiceState, run_id: str) -> None:
    """Wait for the run's allocation-summary writes still in flight."""
    pending = state.summary_writes.get(run_id)
    if pending:
        await asyncio.gather(*list(pending), return_exceptions=True)
