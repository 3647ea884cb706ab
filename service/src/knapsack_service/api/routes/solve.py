"""`POST /v1/solve`: the stateless allocation for success rates the caller knows."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from knapsack_client import SolveRequest, SolveResponse
from knapsack_service import allocation
from knapsack_service.api.bodies import SolveBody, openapi_body
from knapsack_service.api.deps import GrantDep, StateDep
from knapsack_service.api.responses import V1_ERRORS

router = APIRouter(prefix="/v1", tags=["solve"])


@router.post(
    "/solve",
    response_model=SolveResponse,
    responses=V1_ERRORS,
    openapi_extra=openapi_body(SolveRequest),
)
async def solve(state: StateDep, _: GrantDep, request: SolveBody) -> Response:
    """Allocate `budget` rollouts over the given prompts with the chosen strategy."""
    return Response(await allocation.solve(state, request), media_type="application/json")
