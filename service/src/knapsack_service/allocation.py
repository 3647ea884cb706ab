"""From stored statistics to a step's answer: estimates, then one engine call.

Every allocation ends in `_run_engine`, whether it comes from `/v1/solve` (`solve`:
the caller gives the rates) or from a run (`allocate`: the rates are estimated from
the store), so for the same estimates a run's allocation is exactly the stateless
answer (one engine, one tie-break). `lookup` shows the same estimates per prompt.

Errors are domain errors, mapped to the contract by the API's exception handlers:
`EngineInputError` (422 naming the field), `InvalidField` (422), `RunNotFound` (404),
`StoreUnavailable` (503). The one exception to "fail loudly" is the allocation when
the store cannot be read: training must go on, so a run the service has served
gets a uniform answer within its own settings, flagged `degraded`.

Answers are JSON bytes encoded by orjson straight from numpy columns: on the hot
path (1024 prompts) that is about ten times cheaper than pydantic models or dicts
through `json.dumps`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool

from knapsack_client import (
    AllocationRequest,
    BetaEstimator,
    LastVisitEstimator,
    LookupRequest,
    RunSettings,
    SolveRequest,
    rules,
)
from knapsack_service.engine import allocate as engine_allocate
from knapsack_service.engine import (
    balance_shards,
    beta_posterior,
    concentrate_posterior,
    last_visit_counts,
    pooled_beta_prior_from_moments,
    visit_beta_posterior,
    window_counts,
    window_estimate,
)
from knapsack_service.reporting import (
    count_allocation,
    record_allocation_after_answer,
    record_store_error,
)
from knapsack_service.runs import check_count, check_step, settings_from_store
from knapsack_service.state import ServiceState
from knapsack_service.step_plans import keep_plan
from knapsack_service.store import PromptBatch, StoreUnavailable

#: Below this many prompts the work takes well under a millisecond: a thread hop
#: would cost more than it saves. Above, it runs in the threadpool (the numba kernels
#: release the GIL), so the event loop keeps answering `/healthz` meanwhile.
INLINE_PROMPTS = 4096

Result = TypeVar("Result")


@dataclass(frozen=True)
class Estimates:
    """Per-prompt success-rate estimates of one batch (NaN = unseen) and posteriors.

    `window_successes` / `window_trials` are the counts over the estimator's window
    (over every outcome the store keeps under the Beta estimator, which has none).
    """

    p_hat: np.ndarray
    posterior: np.ndarray  # (M, 2) Beta parameters, for knapsack-bayes
    window_successes: np.ndarray
    window_trials: np.ndarray


@dataclass(frozen=True)
class Solution:
    """An engine answer plus what the answer reports about it."""

    n: np.ndarray
    value: float
    cost: float | None
    shards: list[list[tuple[int, int]]] | None
    imbalance: int | None
    solve_seconds: float


def estimate(settings: RunSettings, batch: PromptBatch, step: int) -> Estimates:
    """The run's estimator applied to a batch read from the store.

    - window: success rate over the last `window` outcomes; fewer than
      `min_observations` outcomes count as unseen. The posterior for knapsack-bayes is
      then Beta(1 + successes, 1 + failures) over that window.
    - last-visit (the paper code's rule, the default): the last visit's outcomes when
      it had at least `window` of them, else the last `window` outcomes; then as
      window.
    - beta: evidence decayed per step or per visit plus a prior (fixed, or pooled over
      every prompt of the run that has data, from the moments the store keeps with
      the records: never over the batch's prompts only), optionally concentrated at
      its mean from `plug_in_from` on; p_hat is the posterior mean for prompts with data.
    """
    estimator = settings.estimator
    if isinstance(estimator, BetaEstimator):
        if estimator.prior == "pooled":
            moments = batch.run_moments
            prior_a, prior_b = pooled_beta_prior_from_moments(
                moments.count, moments.rate_sum, moments.rate_square_sum, moments.inverse_trials_sum
            )
        else:
            prior_a, prior_b = estimator.prior
        if estimator.decay_unit == "visit":
            a, b = visit_beta_posterior(
                batch.visit_beta_successes,
                batch.visit_beta_failures,
                estimator.decay,
                prior_a,
                prior_b,
            )
        else:
            a, b = beta_posterior(
                batch.beta_successes,
                batch.beta_failures,
                batch.beta_step,
                step,
                estimator.decay,
                prior_a,
                prior_b,
            )
        p_hat = np.where(batch.trials > 0, a / (a + b), np.nan)
        if estimator.plug_in_from is not None:
            a, b = concentrate_posterior(a, b, estimator.plug_in_from)
        successes, count = window_counts(batch.ring, batch.trials, rules.RING_OUTCOMES)
        return Estimates(p_hat, np.column_stack((a, b)), successes, count)
    if isinstance(estimator, LastVisitEstimator):
        successes, count = last_visit_counts(
            batch.visit_successes, batch.visit_trials, batch.ring, batch.trials, estimator.window
        )
    else:
        successes, count = window_counts(batch.ring, batch.trials, estimator.window)
    p_hat = window_estimate(successes, count, estimator.min_observations)
    posterior = np.column_stack((1.0 + successes, 1.0 + (count - successes))).astype(np.float64)
    return Estimates(p_hat, posterior, successes, count)


def _engine(plan: SolveRequest, rates: np.ndarray | None, posterior: np.ndarray | None) -> Solution:
    """One engine call for a validated plan; `EngineInputError` for an impossible one."""
    costs = None if plan.costs is None else np.asarray(plan.costs, np.float64)
    started = time.perf_counter()
    result = engine_allocate(
        plan.strategy,
        rates,
        plan.budget,
        min_n=plan.min_n,
        max_n=plan.max_n,
        default_n=plan.default_n,
        positive_n=plan.positive_n,
        negative_n=plan.negative_n,
        fallback=plan.fallback,
        costs=costs,
        posterior=posterior,
    )
    shards = imbalance = None
    if plan.workers > 1:
        spread = balance_shards(result.n, plan.workers, plan.split_groups)
        shards, imbalance = spread.shards, spread.imbalance
    return Solution(
        n=result.n,
        value=float(result.value),
        cost=None if result.cost is None else float(result.cost),
        shards=shards,
        imbalance=imbalance,
        solve_seconds=time.perf_counter() - started,
    )


async def _off_loop_if_large(size: int, work: Callable[..., Result], *args: Any) -> Result:
    """Run `work` inline for small batches, in the threadpool for large ones."""
    if size <= INLINE_PROMPTS:
        return work(*args)
    return await run_in_threadpool(work, *args)


async def _run_engine(
    state: ServiceState,
    plan: SolveRequest,
    size: int,
    rates: np.ndarray | None,
    posterior: np.ndarray | None,
) -> Solution:
    solution = await _off_loop_if_large(size, _engine, plan, rates, posterior)
    state.metrics.solve_seconds.labels(plan.strategy).observe(solution.solve_seconds)
    return solution


# --------------------------------------------------------------------------- stateless


async def solve(state: ServiceState, request: SolveRequest) -> bytes:
    """`/v1/solve`: the allocation for rates (or posteriors) the caller knows."""
    field = "success_rates" if request.success_rates is not None else "posterior"
    check_count(state.settings, field, request.prompt_count)
    rates = None
    if request.success_rates is not None:
        rates = np.array(
            [np.nan if rate is None else rate for rate in request.success_rates], np.float64
        )
    posterior = None if request.posterior is None else np.asarray(request.posterior, np.float64)
    solution = await _run_engine(state, request, request.prompt_count, rates, posterior)
    return orjson.dumps(
        {
            "n": solution.n,
            "value": solution.value,
            "strategy": request.strategy,
            "solve_seconds": solution.solve_seconds,
            "shards": solution.shards,
            "imbalance": solution.imbalance,
            "cost": solution.cost,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


# --------------------------------------------------------------------------- runs


def run_plan(settings: RunSettings, request: AllocationRequest) -> SolveRequest:
    """The stateless request equivalent to a run allocation (run defaults filled in)."""
    budget = request.budget
    if budget is None:
        budget = (
            settings.budget
            if settings.budget is not None
            else (len(request.prompts) * settings.default_n)
        )
    return SolveRequest.model_construct(
        success_rates=None,
        budget=budget,
        min_n=settings.min_n if request.min_n is None else request.min_n,
        max_n=settings.max_n if request.max_n is None else request.max_n,
        strategy=request.strategy or settings.strategy,
        workers=request.workers,
        split_groups=request.split_groups,
        fallback=settings.fallback,
        positive_n=settings.positive_n,
        negative_n=settings.negative_n,
        default_n=settings.default_n,
        costs=None,
        posterior=None,
    )


def degraded_plan(settings: RunSettings, request: AllocationRequest) -> SolveRequest:
    """A uniform allocation within the run's settings, for when the store cannot be read.

    The same rule as the client's offline fallback (`knapsack_client.rules`): training
    must go on, so a budget the run's limits cannot spend is clamped into
    `[prompts * min_n, prompts * max_n]` instead of refused.
    """
    plan = run_plan(settings, request)
    uniform = rules.uniform_fallback(
        len(request.prompts), int(plan.budget), min_n=plan.min_n, max_n=plan.max_n
    )
    return plan.model_copy(
        update={
            "strategy": "uniform",
            "budget": uniform.budget,
            "min_n": uniform.min_n,
            "max_n": uniform.max_n,
            "fallback": False,
        }
    )


async def allocate(state: ServiceState, run_id: str, request: AllocationRequest) -> Answer:
    """Group size per prompt for this step: the step's kept plan, or a new one.

    The answer is computed from the run's statistics, then offered as the step's
    plan (`step_plans.keep_plan`); a plan kept earlier for the same request wins, so
    every rank, retry and replay of the step gets the same bytes. A step's plan is
    counted in the metrics and the summary once, when it is made.
    """
    size = len(request.prompts)
    check_count(state.settings, "prompts", size)
    try:
        raw_settings, batch = await state.store.read_batch(run_id, request.prompts)
    except StoreUnavailable as exc:
        return await _degraded(state, run_id, request, exc, "read_batch")
    settings = settings_from_store(state.known_runs, run_id, raw_settings)
    await check_step(state.store, state.known_runs, state.settings, run_id, request.step)
    estimates = await _off_loop_if_large(size, estimate, settings, batch, request.step)
    plan = run_plan(settings, request)
    bayes = plan.strategy == "knapsack-bayes"
    posterior = estimates.posterior if bayes else None
    solution = await _run_engine(state, plan, size, estimates.p_hat, posterior)
    body = await _off_loop_if_large(
        size, _allocation_json, request, plan, solution, estimates.p_hat, None
    )
    try:
        kept = await keep_plan(state.store, run_id, request, body)
    except StoreUnavailable as exc:  # an answer no other rank could get: degrade
        return await _degraded(state, run_id, request, exc, "claim_plan")
    if kept.created:
        record_allocation_after_answer(
            state, run_id, request.step, plan.strategy, solution.n, estimates.p_hat
        )
    return Answer(kept.body, "created" if kept.created else "replayed")


@dataclass(frozen=True)
class Answer:
    """An allocation's JSON and how it relates to the step's plan.

    `plan` is `created` (this call made the step's plan), `replayed` (a plan kept
    for the same request) or `degraded` (a uniform answer, never kept).
    """

    body: bytes
    plan: str


async def _degraded(
    state: ServiceState,
    run_id: str,
    request: AllocationRequest,
    error: StoreUnavailable,
    operation: str,
) -> Answer:
    settings = state.known_runs.get(run_id)
    if settings is None:
        raise error  # a run never served here: its limits are unknown, so 503
    record_store_error(state, operation, error)
    plan = degraded_plan(settings, request)
    size = len(request.prompts)
    solution = await _run_engine(state, plan, size, np.full(size, np.nan), None)
    p_hat = np.full(size, np.nan)
    state.metrics.degraded.labels("store_unavailable").inc()
    count_allocation(state, "uniform", solution.n, p_hat, degraded=True)
    reason = f"store unavailable: {error!r}"
    return Answer(_allocation_json(request, plan, solution, p_hat, reason), "degraded")


def _allocation_json(
    request: AllocationRequest,
    plan: SolveRequest,
    solution: Solution,
    p_hat: np.ndarray,
    reason: str | None,
) -> bytes:
    """The answer's JSON (`AllocationResponse`); NaN estimates become null."""
    entries = [
        {"prompt_id": prompt_id, "n": n, "p_hat": rate}
        for prompt_id, n, rate in zip(
            request.prompts, solution.n.tolist(), p_hat.tolist(), strict=True
        )
    ]
    return orjson.dumps(
        {
            "step": request.step,
            "allocations": entries,
            "shards": solution.shards,
            "imbalance": solution.imbalance,
            "strategy": plan.strategy,
            "budget": int(plan.budget),
            "value": solution.value,
            "solve_seconds": solution.solve_seconds,
            "degraded": reason is not None,
            "reason": reason,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


# --------------------------------------------------------------------------- lookup


async def lookup(state: ServiceState, run_id: str, request: LookupRequest) -> bytes:
    """Raw cumulative counts and the run's estimate of each prompt.

    The estimate is the one an allocation at `request.step` would use, by default at
    the run's last reported step: it depends on the prompt and the run only, never on
    the other ids of the request (issue 12, item 10).
    """
    size = len(request.prompt_ids)
    check_count(state.settings, "prompt_ids", size)
    if request.step is None:
        (raw_settings, batch), counters = await asyncio.gather(
            state.store.read_batch(run_id, request.prompt_ids),
            state.store.read_counters(run_id),
        )
        now = counters["last_step"] or 0
    else:
        raw_settings, batch = await state.store.read_batch(run_id, request.prompt_ids)
        now = request.step
    settings = settings_from_store(state.known_runs, run_id, raw_settings)
    return await _off_loop_if_large(size, _lookup_json, settings, batch, request.prompt_ids, now)


def _lookup_json(
    settings: RunSettings, batch: PromptBatch, prompt_ids: list[str], now: int
) -> bytes:
    """`LookupResponse` JSON from the batch's columns (no per-prompt Python models)."""
    estimates = estimate(settings, batch, now)
    last_step = np.where(batch.seen, batch.last_step, -1).tolist()
    columns = zip(
        prompt_ids,
        batch.successes.tolist(),
        batch.trials.tolist(),
        estimates.p_hat.tolist(),
        last_step,
        estimates.window_successes.tolist(),
        estimates.window_trials.tolist(),
        estimates.posterior.tolist(),
        batch.mean_tokens.tolist(),
        strict=True,
    )
    prompts = [
        {
            "prompt_id": prompt_id,
            "successes": successes,
            "trials": trials,
            "p_hat": p_hat,
            "last_step": None if step < 0 else step,
            "window_successes": window_successes,
            "window_trials": window_trials,
            "posterior": posterior,
            "mean_response_tokens": tokens,
        }
        for (
            prompt_id,
            successes,
            trials,
            p_hat,
            step,
            window_successes,
            window_trials,
            posterior,
            tokens,
        ) in columns
    ]
    return orjson.dumps({"prompts": prompts}, option=orjson.OPT_SERIALIZE_NUMPY)


__all__ = [
    "INLINE_PROMPTS",
    "Estimates",
    "Solution",
    "allocate",
    "degraded_plan",
    "estimate",
    "lookup",
    "run_plan",
    "solve",
]
