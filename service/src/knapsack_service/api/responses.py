"""Error statuses each route documents in the OpenAPI document.

Every `/v1` route can answer 400 (body not JSON), 401/403 (tokens), 408 (body too
slow) and 413 (body too large), both refused by the middleware, 422 (validation) and
429 (overload); routes on a run add 404 `run_not_found`, and routes that need the store add 503.
"""

from __future__ import annotations

from typing import Any

from knapsack_client import ErrorResponse

Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


V1_ERRORS: Responses = {
    400: _error("Body is not valid JSON (not UTF-8, malformed, nested too deep)"),
    401: _error("Missing or unknown bearer token"),
    403: _error("The token may not access this run"),
    408: _error("body_timeout: the body took longer than KRL_BODY_TIMEOUT or came too slowly"),
    413: _error("Body larger than KRL_MAX_BODY_BYTES"),
    422: _error("Invalid request; details name the field"),
    429: _error("More than KRL_MAX_CONCURRENCY requests in flight; retry after Retry-After"),
}
RUN_ERRORS: Responses = {**V1_ERRORS, 404: _error("run_not_found: PUT the run first")}
STORE_ERRORS: Responses = {
    **RUN_ERRORS,
    503: _error("Statistics store unavailable; the same request may be retried after Retry-After"),
}
#: Reports add 409: `report_conflict` (the report_id was applied with other content) and
#: `report_expired` (the step was closed when its report ids left the dedup window).
REPORT_ERRORS: Responses = {
    **STORE_ERRORS,
    409: _error("report_conflict or report_expired: resending this report cannot succeed"),
}
#: Allocations add 409 `plan_conflict` (one plan per step, `step_plans.py`).
ALLOCATION_ERRORS: Responses = {
    **STORE_ERRORS,
    409: _error("plan_conflict: the step's prompts were planned for other request fields"),
}
