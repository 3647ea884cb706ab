"""From stored statistics to a step's allocation: estimates, then one engine call.

`/v1/solve` and run allocations both end in `solve()`, so for the same estimates
a run's allocation is exactly the stateless answer (one engine, one tie-break).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from knapsack_client import AllocationRequest, BetaEstimator, RunSettings, SolveRequest
from knapsack_service.engine import (
    EngineInputError,
    InfeasibleBudget,
    allocate,
    balance_shards,
    beta_posterior,
    pooled_beta_prior,
    window_counts,
    window_estimate,
)
from knapsack_service.errors import ApiError
from knapsack_service.store import PromptBatch


@dataclass(frozen=True)
class Estimates:
    """Per-prompt success-rate estimates of one batch (NaN = unseen) and posteriors."""

    p_hat: np.ndarray
    posterior: np.ndarray  # (M, 2) Beta parameters, for knapsack-bayes


@dataclass(frozen=True)
class Solution:
    """An engine answer plus what the HTTP layer reports about it."""

    n: np.ndarray
    value: float
    cost: float | None
    shards: list[list[tuple[int, int]]] | None
    imbalance: int | None
    solve_seconds: float


def estimate(settings: RunSettings, batch: PromptBatch, step: int) -> Estimates:
    """The run's estimator applied to a batch read from the store.

    - window (the paper): success rate over the last `window` outcomes; fewer than
      `min_observations` outcomes count as unseen. The posterior for knapsack-bayes is
      then Beta(1 + successes, 1 + failures) over that window.
    - beta: decayed evidence plus a prior (fixed, or pooled over the batch's prompts
      that have data); p_hat is the posterior mean for prompts with data.
    """
    estimator = settings.estimator
    if isinstance(estimator, BetaEstimator):
        if estimator.prior == "pooled":
            prior_a, prior_b = pooled_beta_prior(batch.successes, batch.trials)
        else:
            prior_a, prior_b = estimator.prior
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
        return Estimates(p_hat=p_hat, posterior=np.column_stack((a, b)))
    successes, count = window_counts(batch.ring, batch.trials, estimator.window)
    p_hat = window_estimate(successes, count, estimator.min_observations)
    posterior = np.column_stack((1.0 + successes, 1.0 + (count - successes))).astype(np.float64)
    return Estimates(p_hat=p_hat, posterior=posterior)


def solve(
    request: SolveRequest,
    *,
    rates: np.ndarray | None = None,
    posterior: np.ndarray | None = None,
) -> Solution:
    """Run the engine for a validated solve request; input errors become 422s."""
    if rates is None and request.success_rates is not None:
        rates = np.array(
            [np.nan if rate is None else rate for rate in request.success_rates], dtype=np.float64
        )
    if posterior is None and request.posterior is not None:
        posterior = np.asarray(request.posterior, np.float64)
    costs = None if request.costs is None else np.asarray(request.costs, np.float64)
    started = time.perf_counter()
    try:
        result = allocate(
            request.strategy,
            rates,
            request.budget,
            min_n=request.min_n,
            max_n=request.max_n,
            default_n=request.default_n,
            positive_n=request.positive_n,
            negative_n=request.negative_n,
            fallback=request.fallback,
            costs=costs,
            posterior=posterior,
        )
        shards = imbalance = None
        if request.workers > 1:
            plan = balance_shards(result.n, request.workers, request.split_groups)
            shards, imbalance = plan.shards, plan.imbalance
    except EngineInputError as exc:
        detail: dict[str, object] = {"field": exc.field, "message": str(exc)}
        if isinstance(exc, InfeasibleBudget):  # clients need not parse the message
            detail["low"] = exc.low
            detail["high"] = None if math.isinf(exc.high) else exc.high
        raise ApiError(422, "invalid_request", f"{exc.field}: {exc}", details=[detail]) from exc
    elapsed = time.perf_counter() - started
    return Solution(
        n=result.n,
        value=float(result.value),
        cost=None if result.cost is None else float(result.cost),
        shards=shards,
        imbalance=imbalance,
        solve_seconds=elapsed,
    )


def run_solve_request(
    settings: RunSettings, request: AllocationRequest, estimates: Estimates
) -> SolveRequest:
    """The stateless request equivalent to a run allocation (run defaults filled in)."""
    strategy = request.strategy or settings.strategy
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
        strategy=strategy,
        workers=request.workers,
        split_groups=request.split_groups,
        fallback=settings.fallback,
        positive_n=settings.positive_n,
        negative_n=settings.negative_n,
        default_n=settings.default_n,
        costs=None,
        posterior=None,
    )


def uniform_request(request: AllocationRequest, settings: RunSettings | None) -> SolveRequest:
    """A uniform allocation for when the store cannot be read (degraded answer).

    Without the run's settings the budget falls back to 8 per prompt, and a budget
    outside the feasible range is clamped into it: training must go on.
    """
    base = settings or RunSettings()
    prompts = len(request.prompts)
    min_n = base.min_n if request.min_n is None else request.min_n
    max_n = base.max_n if request.max_n is None else request.max_n
    min_n = min(min_n, max_n)
    budget = request.budget
    if budget is None:
        budget = base.budget if base.budget is not None else prompts * base.default_n
    budget = min(max(budget, prompts * min_n), prompts * max_n)
    return SolveRequest.model_construct(
        success_rates=[None] * prompts,
        budget=budget,
        min_n=min_n,
        max_n=max_n,
        strategy="uniform",
        workers=request.workers,
        split_groups=request.split_groups,
        fallback=False,
        positive_n=None,
        negative_n=None,
        default_n=base.default_n,
        costs=None,
        posterior=None,
    )
