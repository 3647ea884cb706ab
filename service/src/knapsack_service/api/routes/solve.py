"""`POST /v1/solve`: the stateless allocation for success rates the caller knows."""

from __future__ import annotations

from fastapi import APIRouter

from knapsack_client import SolveRequest, SolveResponse
from knapsack_service.api.deps import GrantDep, StateDep
from knapsack_service.api.responses import V1_ERRORS
from knapsack_service.api.solving import solve_off_loop
from knapsack_service.errors import invalid_field

router = APIRouter(prefix="/v1", tags=["solve"])


@router.post("/solve", response_model=SolveResponse, responses=V1_ERRORS)
async def solve_endpoint(request: SolveRequest, state: StateDep, _: GrantDep) -> SolveResponse:
    """Allocate `budget` rollouts over the given prompts with the chosen strategy."""
    if request.prompt_count > state.settings.max_prompts:
        field = "success_rates" if request.success_rates is not None else "posterior"
        raise invalid_field(field, f"at most {state.settings.max_prompts} prompts per request")
    solution = await solve_off_loop(state, request, size=request.prompt_count)
    return SolveResponse(
        n=solution.n.tolist(),
        value=solution.value,
        strategy=request.strategy,
        solve_seconds=solution.solve_seconds,
        shards=solution.shards,
        imbalance=solution.imbalance,
        cost=solution.cost,
    )
