"""Errors in the contract's JSON shape: `{"error": {"code", "message", "details"}}`.

Every 4xx names the offending field: validation errors carry a `details` list
of `{"field", "message"}` with dotted paths (`results.3.successes`), and the
first one is repeated in `message` so a log line alone tells what was wrong.
A 5xx is a bug, never an answer to bad input.

Domain code (allocation, reporting, runs, the store, the engine) raises its own
errors and never an HTTP one; `install_error_handlers` maps them to the contract
in one place: `RunNotFound` 404 `run_not_found`, `StoreUnavailable` 503
`store_unavailable` with `Retry-After` (saying the outcome is unknown when a write's
reply was lost, `OutcomeUnknown`), `ReportRefused` 409 (`report_conflict`,
`report_expired`) or 422 naming the field, `EngineInputError` and `InvalidField` 422
naming the field (an infeasible budget adds its feasible range as `low`/`high`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from knapsack_service.engine.errors import EngineInputError, InfeasibleBudget
from knapsack_service.runs import InvalidField
from knapsack_service.step_plans import PlanConflict
from knapsack_service.store import (
    OutcomeUnknown,
    ReportConflict,
    ReportExpired,
    ReportRefused,
    RunNotFound,
    StoreUnavailable,
)

logger = logging.getLogger("knapsack_service")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "overloaded",
    503: "unavailable",
}
#: Seconds a trainer should wait before retrying a request the store could not serve.
RETRY_AFTER_SECONDS = "1"


class ApiError(Exception):
    """An error answer the handlers raise on purpose (404 run_not_found, 503, ...)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def invalid_field(field: str, message: str) -> ApiError:
    """A 422 naming one field (for checks the models cannot make, such as limits)."""
    return ApiError(
        422,
        "invalid_request",
        f"{field}: {message}",
        details=[{"field": field, "message": message}],
    )


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The contract's error document."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSONResponse holding the contract's error document."""
    return JSONResponse(
        error_body(code, message, jsonable_encoder(details)), status_code=status, headers=headers
    )


def _field_path(error: dict[str, Any]) -> str:
    """Dotted path of a pydantic error, without the `body` prefix.

    Cross-field checks raise `FieldError`, whose `field` is appended: pydantic
    locates model-level errors at the model itself.
    """
    if error.get("type") == "json_invalid":
        return "body"
    parts = [str(part) for part in error.get("loc", ()) if part != "body"]
    cause = (error.get("ctx") or {}).get("error")
    blamed = getattr(cause, "field", None)
    if blamed:
        parts.append(blamed)
    return ".".join(parts) or "body"


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors as `{"field", "message"}` pairs."""
    details = []
    for error in errors:
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        details.append({"field": _field_path(error), "message": message})
    return details


def allowed_methods(request: Request) -> list[str]:
    """Methods of every route whose path matches the request's (for a 405's Allow)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": next(iter(route.methods))})
            if match is Match.FULL:
                methods |= route.methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the contract's shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RunNotFound)
    async def _run_not_found(_: Request, exc: RunNotFound) -> JSONResponse:
        message = f"run {exc.run_id!r} does not exist; PUT it first"
        return error_response(404, "run_not_found", message)

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        metrics = request.app.state.krl.metrics
        route = request.scope.get("route")
        metrics.store_errors.labels(getattr(route, "name", "unknown")).inc()
        metrics.store_up.set(0)
        logger.warning("store unavailable", extra={"error": repr(exc)})
        if isinstance(exc, OutcomeUnknown):
            message = (
                f"statistics store did not answer in time ({exc}); the outcome is unknown: "
                "the change may have been applied. Retrying the same request is safe (a "
                "report is applied at most once per report_id)"
            )
        else:
            message = f"statistics store unavailable ({exc}); the same request may be retried"
        headers = {"Retry-After": RETRY_AFTER_SECONDS}
        return error_response(503, "store_unavailable", message, headers=headers)

    @app.exception_handler(ReportRefused)
    async def _report_refused(_: Request, exc: ReportRefused) -> JSONResponse:
        # Resending the same report can never succeed: 409 for an id or step the run
        # already settled, 422 for a limit; both name the field.
        details = [{"field": exc.field, "message": exc.reason}]
        if isinstance(exc, ReportConflict):
            return error_response(409, "report_conflict", str(exc), details)
        if isinstance(exc, ReportExpired):
            return error_response(409, "report_expired", str(exc), details)
        return error_response(422, "invalid_request", str(exc), details)

    @app.exception_handler(EngineInputError)
    async def _engine_input(_: Request, exc: EngineInputError) -> JSONResponse:
        detail: dict[str, object] = {"field": exc.field, "message": str(exc)}
        if isinstance(exc, InfeasibleBudget):  # clients need not parse the message
            detail["low"] = exc.low
            detail["high"] = None if math.isinf(exc.high) else exc.high
        return error_response(422, "invalid_request", f"{exc.field}: {exc}", [detail])

    @app.exception_handler(PlanConflict)
    async def _plan_conflict(_: Request, exc: PlanConflict) -> JSONResponse:
        details = [{"field": "step", "message": str(exc)}]
        return error_response(409, "plan_conflict", str(exc), details)

    @app.exception_handler(InvalidField)
    async def _invalid_field(_: Request, exc: InvalidField) -> JSONResponse:
        detail = {"field": exc.field, "message": str(exc)}
        return error_response(422, "invalid_request", f"{exc.field}: {exc}", [detail])

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        first = details[0] if details else {"field": "body", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}"
        return error_response(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # RFC 9110 15.5.6: list every method the path allows
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal", "internal error")
