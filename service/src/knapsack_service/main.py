"""The FastAPI application: built here, its parts live in api/, store/, engine/.

`create_app(settings)` returns a fresh app with its own store and metrics
registry, so tests and embedded uses (the demo runs the service in-process on
the memory store) never share state through module globals.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from knapsack_service import __version__
from knapsack_service.api.bodies import add_body_schemas
from knapsack_service.api.docs import install_docs
from knapsack_service.api.routes import ops, runs, solve
from knapsack_service.errors import install_error_handlers
from knapsack_service.health import watch_health
from knapsack_service.logs import configure_logging
from knapsack_service.metrics import ServiceMetrics
from knapsack_service.middleware import ServiceMiddleware
from knapsack_service.settings import Settings, get_settings
from knapsack_service.state import ServiceState
from knapsack_service.store import Store, create_store

logger = logging.getLogger("knapsack_service")


def build_store(settings: Settings) -> Store:
    """Redis when `KRL_REDIS_URL` is set, else the embedded memory store."""
    return create_store(
        settings.redis_url,
        timeout=settings.redis_timeout,
        cluster=settings.redis_cluster,
        max_concurrency=settings.max_concurrency,
    )


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """A new app; `store` overrides the one the settings would build (tests, embedding)."""
    settings = settings or get_settings()
    metrics = ServiceMetrics(
        max_runs=settings.max_metric_runs, idle_seconds=settings.metric_run_idle_seconds
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(
            settings=settings, store=store or build_store(settings), metrics=metrics
        )
        app.state.krl = state
        # Everything loaded so far lives as long as the process: out of the collector's
        # full passes, which otherwise rescan it while a large request builds objects.
        gc.freeze()
        warm = asyncio.create_task(watch_health(state))
        try:
            yield
        finally:
            # Cancel until it ends: Python 3.11's wait_for can swallow a cancellation
            # that lands as its inner call completes (CPython gh-86296), and a task
            # left running past shutdown hangs whoever closes the event loop.
            while not warm.done():
                warm.cancel()
                await asyncio.wait({warm}, timeout=0.1)
            await state.store.close()

    app = FastAPI(
        title="knapsack-rl",
        version=__version__,
        summary="Rollout budgets for GRPO by knapsack (Li et al., 2025).",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by install_docs
        redoc_url=None,  # no packaged assets: a CDN page would be blank offline
    )
    install_error_handlers(app)
    app.add_middleware(
        ServiceMiddleware,
        metrics=metrics,
        max_concurrency=settings.max_concurrency,
        max_body_bytes=settings.max_body_bytes,
        api_tokens=settings.api_tokens,
        body_timeout=settings.body_timeout,
        body_min_rate=settings.body_min_rate,
    )
    app.include_router(ops.router)
    app.include_router(solve.router)
    app.include_router(runs.router)
    add_body_schemas(app)
    install_docs(app)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory knapsack_service.main:app_from_environment`."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
