"""Running the engine from async handlers without blocking the event loop."""

from __future__ import annotations

import numpy as np
from starlette.concurrency import run_in_threadpool

from knapsack_client import SolveRequest
from knapsack_service.planning import Solution, solve
from knapsack_service.state import ServiceState

#: Below this many prompts a solve takes microseconds: a thread hop would cost more
#: than it saves. Above, the (nogil) kernels run in the threadpool.
INLINE_SOLVE_PROMPTS = 4096


async def solve_off_loop(
    state: ServiceState,
    request: SolveRequest,
    *,
    size: int,
    rates: np.ndarray | None = None,
    posterior: np.ndarray | None = None,
) -> Solution:
    """Solve inline for small batches, in a worker thread for large ones; record timing."""
    if size <= INLINE_SOLVE_PROMPTS:
        solution = solve(request, rates=rates, posterior=posterior)
    else:
        solution = await run_in_threadpool(solve, request, rates=rates, posterior=posterior)
    state.metrics.solve_seconds.labels(request.strategy).observe(solution.solve_seconds)
    return solution
