"""Runs: settings, per-step allocations, outcome reports, lookups and summaries.

Handlers only bind HTTP to the domain modules (`runs`, `allocation`, `reporting`);
store and engine errors become the contract's answers in `errors.py`.

Failure policy (API.md): when the store cannot be read, an allocation for a run this
process has served still answers 200, uniform within the run's settings and flagged
`degraded`, so training goes on; everything else answers 503 with `Retry-After`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from knapsack_client import (
    AllocationRequest,
    AllocationResponse,
    LookupRequest,
    LookupResponse,
    OutcomeAck,
    OutcomeReport,
    RunInfo,
    RunSettings,
    RunSummary,
)
from knapsack_service import allocation, reporting, runs
from knapsack_service.api.bodies import AllocationBody, LookupBody, ReportBody, openapi_body
from knapsack_service.api.deps import RunIdDep, StateDep
from knapsack_service.api.responses import ALLOCATION_ERRORS, REPORT_ERRORS, STORE_ERRORS
from knapsack_service.step_plans import PLAN_HEADER

router = APIRouter(prefix="/v1/runs", tags=["runs"])

JSON = "application/json"


@router.put(
    "/{run_id}",
    response_model=RunInfo,
    responses={**STORE_ERRORS, 201: {"model": RunInfo, "description": "Run created"}},
)
async def put_run(run_id: RunIdDep, state: StateDep, settings: RunSettings) -> JSONResponse:
    """Create a run or change its settings (idempotent: trainers put theirs at start-up).

    The body is a JSON object (`{}` takes every default). An optional body would make
    FastAPI attach its field info to a union member, which pydantic warns about.
    """
    info = await runs.put_run(state.store, state.known_runs, run_id, settings)
    return JSONResponse(info.model_dump(mode="json"), status_code=201 if info.created else 200)


@router.get("/{run_id}", response_model=RunInfo, responses=STORE_ERRORS)
async def get_run(run_id: RunIdDep, state: StateDep) -> RunInfo:
    """A run's settings and counters."""
    return await runs.run_info(state.store, state.known_runs, run_id)


@router.delete("/{run_id}", responses=STORE_ERRORS)
async def delete_run(run_id: RunIdDep, state: StateDep) -> dict[str, Any]:
    """Remove every key of the run (settings, statistics, summaries, report ids)."""
    await runs.delete_run(state.store, state.known_runs, run_id)
    state.metrics.forget_run(run_id)
    return {"run_id": run_id, "deleted": True}


@router.post(
    "/{run_id}/allocations",
    response_model=AllocationResponse,
    responses=ALLOCATION_ERRORS,
    openapi_extra=openapi_body(AllocationRequest),
)
async def allocate(run_id: RunIdDep, state: StateDep, request: AllocationBody) -> Response:
    """Group size per prompt for this step, from the run's statistics.

    The first answer for a step's prompts is kept and served again to every call
    with the same request (ranks, retries, replays); see `step_plans.py`.
    """
    answer = await allocation.allocate(state, run_id, request)
    return Response(answer.body, media_type=JSON, headers={PLAN_HEADER: answer.plan})


@router.post(
    "/{run_id}/outcomes",
    response_model=OutcomeAck,
    responses=REPORT_ERRORS,
    openapi_extra=openapi_body(OutcomeReport),
)
async def report_outcomes(run_id: RunIdDep, state: StateDep, report: ReportBody) -> OutcomeAck:
    """Apply a report once, all or nothing (deduplicated by report_id)."""
    return await reporting.apply_report(state, run_id, report)


@router.post(
    "/{run_id}/prompts/lookup",
    response_model=LookupResponse,
    responses=STORE_ERRORS,
    openapi_extra=openapi_body(LookupRequest),
)
async def lookup(run_id: RunIdDep, state: StateDep, request: LookupBody) -> Response:
    """Raw cumulative counts and the run's current estimate of each prompt."""
    return Response(await allocation.lookup(state, run_id, request), media_type=JSON)


@router.get("/{run_id}/summary", response_model=RunSummary, responses=STORE_ERRORS)
async def summary(
    run_id: RunIdDep,
    state: StateDep,
    last: Annotated[
        int | None, Query(ge=1, le=100_000, description="Only the last N steps")
    ] = None,
) -> Response:
    """Per-step rollouts, effective-gradient ratio, zero-gradient shares, histograms."""
    return Response(await reporting.run_summary(state, run_id, last), media_type=JSON)
