"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from knapsack_client import ErrorResponse
from knapsack_service.api.deps import StateDep
from knapsack_service.auth import check_scrape_access
from knapsack_service.health import refresh_health

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    """Liveness: answers as long as the event loop runs (no store call)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Kernels compiled and store reachable",
    responses={503: {"description": "Not ready: kernels compiling or store unreachable"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    """Readiness: numba kernels compiled (or loaded from cache) and the store answers."""
    health = await refresh_health(state)
    ready = health.ready
    checks = {"kernels": health.kernels, "store": health.store}
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        401: {"model": ErrorResponse, "description": "Token required by setting"},
        403: {"model": ErrorResponse, "description": "A run-scoped token"},
    },
)
async def metrics(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus text format; behind the scrape token when set (`auth.check_scrape_access`)."""
    check_scrape_access(state.settings, authorization)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
