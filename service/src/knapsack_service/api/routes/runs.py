"""Runs: settings, per-step allocations, outcome reports, lookups and summaries.

Failure policy (API.md): when the store cannot be read, an allocation still
answers 200 with a uniform allocation flagged `degraded` so training goes on; a
report answers 503 with `Retry-After` and changes nothing (the client retries it
under the same report_id, so it is applied exactly once later).
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _escape_json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from knapsack_client import (
    AllocationRequest,
    AllocationResponse,
    BetaEstimator,
    LookupRequest,
    LookupResponse,
    OutcomeAck,
    OutcomeReport,
    PromptStats,
    RunCounters,
    RunInfo,
    RunSettings,
    RunSummary,
    StepSummary,
)
from knapsack_service.api.deps import RunIdDep, StateDep
from knapsack_service.api.responses import RUN_ERRORS, STORE_ERRORS
from knapsack_service.api.solving import solve_off_loop
from knapsack_service.engine import window_counts
from knapsack_service.errors import ApiError, invalid_field
from knapsack_service.metrics import DIFFICULTY_BUCKETS
from knapsack_service.planning import Solution, estimate, run_solve_request, uniform_request
from knapsack_service.reporting import to_groups
from knapsack_service.state import ServiceState
from knapsack_service.store import (
    ApplyResult,
    PromptBatch,
    ReportToApply,
    RunNotFound,
    StoreUnavailable,
)

logger = logging.getLogger("knapsack_service.runs")

router = APIRouter(prefix="/v1/runs", tags=["runs"])


#: Seconds a trainer should wait before retrying a report the store could not take.
RETRY_AFTER_SECONDS = "1"


def run_not_found(run_id: str) -> ApiError:
    """The contract's 404 for a run that was never created."""
    return ApiError(404, "run_not_found", f"run {run_id!r} does not exist; PUT it first")


def store_unavailable(exc: Exception) -> ApiError:
    """503 with Retry-After: nothing was changed, retry the same request."""
    return ApiError(
        503,
        "store_unavailable",
        f"statistics store unavailable ({type(exc).__name__}); nothing was changed, retry",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


@lru_cache(maxsize=1024)
def parse_settings(raw: str) -> RunSettings:
    """Stored settings JSON -> model, cached: every allocation needs them."""
    return RunSettings.model_validate_json(raw)


def _record_store_error(state: ServiceState, operation: str, exc: Exception) -> None:
    state.metrics.store_errors.labels(operation).inc()
    state.metrics.store_up.set(0)
    logger.warning("store error", extra={"operation": operation, "error": repr(exc)})


def difficulty_bucket(p_hat: np.ndarray) -> np.ndarray:
    """Index into DIFFICULTY_BUCKETS for each estimate (Fig. 5's difficulty bands)."""
    bucket = np.full(p_hat.shape, 0, dtype=np.int64)  # unseen
    seen = ~np.isnan(p_hat)
    p = np.where(seen, p_hat, 0.5)
    inner = 2 + np.minimum((p * 5).astype(np.int64), 4)  # p0_20 .. p80_100
    bucket = np.where(seen, inner, bucket)
    bucket = np.where(seen & (p <= 0.0), 1, bucket)
    bucket = np.where(seen & (p >= 1.0), 7, bucket)
    return bucket


def _count_allocation(
    state: ServiceState, strategy: str, n: np.ndarray, p_hat: np.ndarray, degraded: bool
) -> None:
    metrics = state.metrics
    metrics.allocations.labels(strategy, "true" if degraded else "false").inc()
    metrics.rollouts_allocated.labels(strategy).inc(int(n.sum()))
    buckets = difficulty_bucket(p_hat)
    prompts = np.bincount(buckets, minlength=len(DIFFICULTY_BUCKETS))
    rollouts = np.bincount(buckets, weights=n, minlength=len(DIFFICULTY_BUCKETS))
    for index, name in enumerate(DIFFICULTY_BUCKETS):
        if prompts[index]:
            metrics.prompts_by_difficulty.labels(name).inc(int(prompts[index]))
            metrics.rollouts_by_difficulty.labels(name).inc(int(rollouts[index]))


#: Pieces of one allocation entry as `json.dumps` writes {"prompt_id": .., "n": ..,
#: "p_hat": ..}; `_ENTRY_NEXT` closes one entry and opens the next.
_ENTRY_OPEN = '{"prompt_id": '
_ENTRY_NEXT = '}, {"prompt_id": '
_ENTRY_N = ', "n": '
_ENTRY_P = ', "p_hat": '
_SHARD_PAIR = "[%d, %d]"
#: Decimal texts of small counts: a list lookup is several times faster than `str`.
_COUNT_TEXTS = [str(count) for count in range(1025)]


def _float_texts(values: np.ndarray) -> list[str]:
    """`json.dumps` text of each float (NaN as null), one `repr` per distinct value.

    Distinct by bit pattern (a view as int64), so -0.0 and 0.0 keep their own texts;
    estimates repeat a lot (window counts give a few dozen distinct rates).
    """
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    unique, inverse = np.unique(bits, return_inverse=True)
    float_repr = float.__repr__
    texts = ["null" if v != v else float_repr(v) for v in unique.view(np.float64).tolist()]
    return list(map(texts.__getitem__, inverse.tolist()))


def _allocations_json(prompts: list[str], n: np.ndarray, p_hat: np.ndarray) -> str:
    """`json.dumps` of the allocation list, byte for byte, without the dicts.

    The hot path of an allocation: the text is joined from pieces made by C-level
    maps and slice assignment (ids escaped by the json module's own C escaper,
    counts from a table of texts, floats by `float.__repr__` once per distinct value
    as json does, NaN as null), several times faster than one `%` format per prompt.
    The reference is `json.dumps` of the plain answer (tests/service/test_allocation_json.py).
    """
    m = len(prompts)
    counts = n.tolist()
    if len(counts) != m or len(p_hat) != m:
        raise ValueError("prompts, n and p_hat differ in length")
    if not m:
        return "[]"
    pieces: list[str] = [_ENTRY_NEXT] * (6 * m)
    pieces[0] = _ENTRY_OPEN
    pieces[1::6] = list(map(_escape_json, prompts))
    pieces[2::6] = [_ENTRY_N] * m
    small = int(n.max()) < len(_COUNT_TEXTS) and int(n.min()) >= 0
    pieces[3::6] = list(map(_COUNT_TEXTS.__getitem__ if small else str, counts))
    pieces[4::6] = [_ENTRY_P] * m
    pieces[5::6] = _float_texts(p_hat)
    return "[" + "".join(pieces) + "}]"


def _shards_json(shards: list[list[tuple[int, int]]] | None) -> str:
    if shards is None:
        return "null"
    rows = ["[" + ", ".join([_SHARD_PAIR % pair for pair in shard]) + "]" for shard in shards]
    return "[" + ", ".join(rows) + "]"


def _allocation_json(
    request: AllocationRequest,
    strategy: str,
    budget: int,
    solution: Solution,
    p_hat: np.ndarray,
    *,
    degraded: bool = False,
    reason: str | None = None,
) -> str:
    """The answer's JSON text, written by hand: the hot path (identical to `json.dumps`)."""
    head = json.dumps({"step": request.step})[:-1]
    tail = json.dumps(
        {
            "imbalance": solution.imbalance,
            "strategy": strategy,
            "budget": budget,
            "value": solution.value,
            "solve_seconds": solution.solve_seconds,
            "degraded": degraded,
            "reason": reason,
        }
    )[1:]
    allocations = _allocations_json(request.prompts, solution.n, p_hat)
    shards = _shards_json(solution.shards)
    return f'{head}, "allocations": {allocations}, "shards": {shards}, {tail}'


async def _read_settings(state: ServiceState, run_id: str, operation: str) -> RunSettings:
    try:
        raw = await state.store.get_settings(run_id)
    except StoreUnavailable as exc:
        _record_store_error(state, operation, exc)
        raise store_unavailable(exc) from exc
    if raw is None:
        raise run_not_found(run_id)
    return parse_settings(raw)


@router.put(
    "/{run_id}",
    response_model=RunInfo,
    responses={**STORE_ERRORS, 201: {"model": RunInfo, "description": "Run created"}},
)
async def put_run(
    run_id: RunIdDep,
    state: StateDep,
    settings: RunSettings,
) -> JSONResponse:
    """Create a run or change its settings (idempotent: trainers put theirs at start-up).

    The body is a JSON object (`{}` takes every default). An optional body would make
    FastAPI attach its field info to a union member, which pydantic warns about.
    """
    try:
        created = await state.store.put_settings(run_id, settings.model_dump_json())
        counters = await state.store.read_counters(run_id)
    except StoreUnavailable as exc:
        _record_store_error(state, "put_settings", exc)
        raise store_unavailable(exc) from exc
    info = RunInfo(
        run_id=run_id, settings=settings, counters=RunCounters(**counters), created=created
    )
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/{run_id}", response_model=RunInfo, responses=STORE_ERRORS)
async def get_run(run_id: RunIdDep, state: StateDep) -> RunInfo:
    """A run's settings and counters."""
    settings = await _read_settings(state, run_id, "get_settings")
    try:
        counters = await state.store.read_counters(run_id)
    except StoreUnavailable as exc:
        _record_store_error(state, "read_counters", exc)
        raise store_unavailable(exc) from exc
    return RunInfo(run_id=run_id, settings=settings, counters=RunCounters(**counters))


@router.delete("/{run_id}", responses=STORE_ERRORS)
async def delete_run(run_id: RunIdDep, state: StateDep) -> dict[str, Any]:
    """Remove every key of the run (settings, statistics, summaries, report ids)."""
    try:
        existed = await state.store.delete_run(run_id)
    except StoreUnavailable as exc:
        _record_store_error(state, "delete_run", exc)
        raise store_unavailable(exc) from exc
    if not existed:
        raise run_not_found(run_id)
    return {"run_id": run_id, "deleted": True}


@router.post("/{run_id}/allocations", response_model=AllocationResponse, responses=RUN_ERRORS)
async def allocate(run_id: RunIdDep, request: AllocationRequest, state: StateDep) -> Response:
    """Group size per prompt for this step, from the run's statistics."""
    if len(request.prompts) > state.settings.max_prompts:
        raise invalid_field("prompts", f"at most {state.settings.max_prompts} prompts per request")
    try:
        raw_settings, batch = await state.store.read_batch(run_id, request.prompts)
    except StoreUnavailable as exc:
        _record_store_error(state, "read_batch", exc)
        return await _degraded_allocation(state, request, f"store unavailable: {exc!r}")
    if raw_settings is None:
        raise run_not_found(run_id)
    settings = parse_settings(raw_settings)
    estimates = estimate(settings, batch, request.step)
    solve_request = run_solve_request(settings, request, estimates)
    bayes = solve_request.strategy == "knapsack-bayes"
    solution = await solve_off_loop(
        state,
        solve_request,
        size=len(request.prompts),
        rates=estimates.p_hat,
        posterior=estimates.posterior if bayes else None,
    )
    # The summary write goes out first and its round trip overlaps the encoding of the
    # answer; the answer still waits for it, so a summary read afterwards sees it.
    recording = asyncio.ensure_future(
        state.store.record_allocation(run_id, request.step, solution.n, estimates.p_hat)
    )
    try:
        _count_allocation(state, solve_request.strategy, solution.n, estimates.p_hat, False)
        text = _allocation_json(
            request, solve_request.strategy, int(solve_request.budget), solution, estimates.p_hat
        )
    finally:
        try:
            await recording
        except StoreUnavailable as exc:  # the answer stands; only the summary misses it
            _record_store_error(state, "record_allocation", exc)
    return Response(text, media_type="application/json")


async def _degraded_allocation(
    state: ServiceState, request: AllocationRequest, reason: str
) -> Response:
    fallback = uniform_request(request, None)
    solution = await solve_off_loop(state, fallback, size=len(request.prompts))
    p_hat = np.full(len(request.prompts), np.nan)
    state.metrics.degraded.labels("store_unavailable").inc()
    _count_allocation(state, "uniform", solution.n, p_hat, True)
    text = _allocation_json(
        request, "uniform", int(fallback.budget), solution, p_hat, degraded=True, reason=reason
    )
    return Response(text, media_type="application/json")


@router.post("/{run_id}/outcomes", response_model=OutcomeAck, responses=STORE_ERRORS)
async def report_outcomes(run_id: RunIdDep, report: OutcomeReport, state: StateDep) -> OutcomeAck:
    """Apply a report once, all or nothing (deduplicated by report_id)."""
    if len(report.results) > state.settings.max_prompts:
        raise invalid_field("results", f"at most {state.settings.max_prompts} results per report")
    settings = await _read_settings(state, run_id, "get_settings")
    decay = settings.estimator.decay if isinstance(settings.estimator, BetaEstimator) else 1.0
    groups = to_groups(report, settings.success_threshold)
    to_apply = ReportToApply(
        report_id=report.report_id, step=report.step, decay=decay, groups=groups
    )
    try:
        result = await state.store.apply_report(run_id, to_apply)
    except RunNotFound as exc:
        raise run_not_found(run_id) from exc
    except StoreUnavailable as exc:
        _record_store_error(state, "apply_report", exc)
        state.metrics.reports.labels("rejected").inc()
        raise store_unavailable(exc) from exc
    metrics = state.metrics
    metrics.store_up.set(1)
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
    label = state.metrics.run_label(run_id)
    rollouts = totals.get("rollouts", 0)
    groups = totals.get("groups", 0)
    metrics = state.metrics
    if rollouts:
        metrics.run_effective_ratio.labels(label).set(
            totals.get("effective_rollouts", 0) / rollouts
        )
    if groups:
        metrics.run_all_success.labels(label).set(totals.get("all_success_groups", 0) / groups)
        metrics.run_all_failure.labels(label).set(totals.get("all_failure_groups", 0) / groups)
    metrics.run_last_step.labels(label).set(step)


@router.post("/{run_id}/prompts/lookup", response_model=LookupResponse, responses=STORE_ERRORS)
async def lookup(run_id: RunIdDep, request: LookupRequest, state: StateDep) -> LookupResponse:
    """Raw cumulative counts and the run's current estimate of each prompt."""
    if len(request.prompt_ids) > state.settings.max_prompts:
        raise invalid_field("prompt_ids", f"at most {state.settings.max_prompts} per request")
    try:
        raw_settings, batch = await state.store.read_batch(run_id, request.prompt_ids)
    except StoreUnavailable as exc:
        _record_store_error(state, "read_batch", exc)
        raise store_unavailable(exc) from exc
    if raw_settings is None:
        raise run_not_found(run_id)
    settings = parse_settings(raw_settings)
    now = int(batch.last_step.max(initial=0))
    estimates = estimate(settings, batch, now)
    prompts = []
    for index, prompt_id in enumerate(request.prompt_ids):
        seen = bool(batch.seen[index])
        p_hat = float(estimates.p_hat[index])
        tokens = float(batch.mean_tokens[index])
        window_successes, window_trials = _window_numbers(settings, batch, index)
        prompts.append(
            PromptStats(
                prompt_id=prompt_id,
                successes=int(batch.successes[index]),
                trials=int(batch.trials[index]),
                p_hat=None if p_hat != p_hat else p_hat,
                last_step=int(batch.last_step[index]) if seen else None,
                window_successes=window_successes,
                window_trials=window_trials,
                posterior=(
                    float(estimates.posterior[index, 0]),
                    float(estimates.posterior[index, 1]),
                ),
                mean_response_tokens=None if tokens != tokens else tokens,
            )
        )
    return LookupResponse(prompts=prompts)


def _window_numbers(settings: RunSettings, batch: PromptBatch, index: int) -> tuple[int, int]:
    window = getattr(settings.estimator, "window", 48)
    successes, count = window_counts(
        batch.ring[index : index + 1], batch.trials[index : index + 1], window
    )
    return int(successes[0]), int(count[0])


@router.get("/{run_id}/summary", response_model=RunSummary, responses=STORE_ERRORS)
async def summary(
    run_id: RunIdDep,
    state: StateDep,
    last: Annotated[
        int | None, Query(ge=1, le=100_000, description="Only the last N steps")
    ] = None,
) -> RunSummary:
    """Per-step rollouts, effective-gradient ratio, zero-gradient shares, histograms."""
    await _read_settings(state, run_id, "get_settings")
    try:
        rows = await state.store.read_summary(run_id, last)
    except StoreUnavailable as exc:
        _record_store_error(state, "read_summary", exc)
        raise store_unavailable(exc) from exc
    return RunSummary(run_id=run_id, steps=[summarise_step(row) for row in rows])


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
