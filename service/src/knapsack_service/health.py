"""Readiness: kernels compiled and store reachable, kept fresh in the background.

The kernels compile (or load from `NUMBA_CACHE_DIR`) in a thread at start-up so
`/healthz` answers at once while `/readyz` waits for them. A background loop
pings the store every few seconds so `krl_store_up` and `krl_ready` stay true to
life even where nothing probes `/readyz` (compose, a laptop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass

from knapsack_service.engine import warm_up
from knapsack_service.state import ServiceState
from knapsack_service.store import StoreError

logger = logging.getLogger("knapsack_service")

#: Seconds between background store checks.
HEALTH_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class Health:
    """One readiness check's outcome."""

    kernels: bool
    store: bool

    @property
    def ready(self) -> bool:
        """Both parts are up."""
        return self.kernels and self.store


async def refresh_health(state: ServiceState) -> Health:
    """Ping the store once and set the readiness gauges."""
    store_ok = True
    try:
        await asyncio.wait_for(state.store.ping(), timeout=state.settings.redis_timeout * 2)
    except (StoreError, TimeoutError, OSError):
        store_ok = False
        state.metrics.store_errors.labels("ping").inc()
    health = Health(kernels=state.kernels_ready, store=store_ok)
    state.metrics.store_up.set(1 if store_ok else 0)
    state.metrics.ready.set(1 if health.ready else 0)
    return health


async def refresh_store_memory(state: ServiceState) -> None:
    """Export the store's memory use and limit (the Redis memory alert's input).

    No `asyncio.wait_for` here: the Redis client's socket timeout bounds the call, and
    on Python 3.11 `wait_for` can swallow a cancellation that races the inner call's
    completion, which would keep the health loop alive after shutdown.
    """
    try:
        usage = await state.store.memory_usage()
    except (StoreError, TimeoutError, OSError):
        return  # the ping above already counts the outage
    if usage is not None:
        state.metrics.store_memory_used.set(usage.used_bytes)
        state.metrics.store_memory_max.set(usage.max_bytes)


async def compile_kernels(state: ServiceState) -> None:
    """Compile (or load) the engine's kernels in a daemon thread.

    Not `asyncio.to_thread`: shutdown waits for the default executor's threads, so a
    server stopped during a cold compile would hang for the compile's duration.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def compile_in_thread() -> None:
        error: Exception | None = None
        try:
            warm_up()
        except Exception as exc:  # readiness stays false; /readyz tells the orchestrator
            error = exc
        # RuntimeError: the app shut down while compiling and nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, done, error)

    threading.Thread(target=compile_in_thread, name="krl-warm-up", daemon=True).start()
    try:
        await done
    except Exception:
        logger.exception("kernel warm-up failed")
        return
    state.kernels_ready = True
    logger.info("kernels ready")


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # cancelled at shutdown
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


async def watch_health(state: ServiceState) -> None:
    """Compile the kernels, then refresh the readiness gauges until cancelled."""
    await compile_kernels(state)
    current = asyncio.current_task()
    while True:
        await refresh_health(state)
        await refresh_store_memory(state)
        if current is not None and current.cancelling():  # a swallowed cancellation
            raise asyncio.CancelledError
        await asyncio.sleep(HEALTH_INTERVAL_SECONDS)
