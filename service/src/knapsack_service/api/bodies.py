"""Request bodies parsed by pydantic, in the threadpool when they are large.

FastAPI validates a declared body model on the event loop. For the largest bodies the
service allows (16 MiB: 100k success rates, a report of 100k results before its
limit is checked) that takes 0.1 to 0.4 s, during which `/healthz` cannot answer
and a liveness probe restarts a healthy pod. The body aliases here (`ReportBody`,
...) read the body, validate small ones inline (a thread hop costs more than they
do) and large ones in the threadpool. Errors are the `RequestValidationError`
FastAPI raises, so they keep the contract's 422 shape; the OpenAPI document still
shows the models (`openapi_body` and `add_body_schemas`).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool

from knapsack_client import (
    AllocationRequest,
    LookupRequest,
    OutcomeReport,
    PromptResult,
    SolveRequest,
)
from knapsack_service.runs import check_count_limit, list_limits

#: Bodies up to this size are validated on the event loop (about 5 ms at most).
INLINE_BODY_BYTES = 256 * 1024

Model = TypeVar("Model", bound=BaseModel)

#: Models whose schema the OpenAPI document must carry (bodies FastAPI does not see).
_BODY_MODELS: list[type[BaseModel]] = []


def parse_body(model: type[Model], raw: bytes, limits: dict[str, int] | None = None) -> Model:
    """Validate JSON bytes as `model`; a `RequestValidationError` located in the body.

    With `limits` (field -> longest list, `runs.list_limits`), the large-body path:
    a list beyond its limit is refused before any model is built (validating 100k
    report results only to refuse them costs most of a second), and a report's
    results are validated in chunks. One pydantic call over millions of rewards
    holds the GIL throughout, so the event loop's thread could not run meanwhile;
    between chunks it can.
    """
    try:
        if limits is None:
            return model.model_validate_json(raw)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return model.model_validate_json(raw)  # pydantic names the JSON error
        if isinstance(data, dict):
            for field, limit in limits.items():
                value = data.get(field)
                if isinstance(value, list):
                    check_count_limit(field, len(value), limit)
            if model is OutcomeReport and isinstance(data.get("results"), list):
                data["results"] = _results_in_chunks(data["results"])
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None


#: Results validated per pydantic call on the large-body path.
_RESULTS_CHUNK = 256
_RESULTS = TypeAdapter(list[PromptResult])


def _results_in_chunks(results: list[Any]) -> list[PromptResult]:
    validated: list[PromptResult] = []
    for start in range(0, len(results), _RESULTS_CHUNK):
        try:
            validated += _RESULTS.validate_python(results[start : start + _RESULTS_CHUNK])
        except ValidationError as exc:
            errors = [
                {**error, "loc": ("body", "results", start + error["loc"][0], *error["loc"][1:])}
                for error in exc.errors(include_url=False)
            ]
            raise RequestValidationError(errors) from None
    return validated


def _body_of(model: type[Model]) -> Any:
    """A dependency that yields the request body validated as `model`."""

    async def body(request: Request) -> Model:
        raw = await request.body()
        if len(raw) <= INLINE_BODY_BYTES:
            return parse_body(model, raw)
        limits = list_limits(request.app.state.krl.settings)
        return await run_in_threadpool(parse_body, model, raw, limits)

    _BODY_MODELS.append(model)
    return Depends(body)


SolveBody = Annotated[SolveRequest, _body_of(SolveRequest)]
AllocationBody = Annotated[AllocationRequest, _body_of(AllocationRequest)]
ReportBody = Annotated[OutcomeReport, _body_of(OutcomeReport)]
LookupBody = Annotated[LookupRequest, _body_of(LookupRequest)]


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route whose body is parsed here (`ReportBody`, ...)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_body_schemas(app: FastAPI) -> None:
    """Put the schemas of the body models parsed here into the app's OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        _, definitions = models_json_schema(
            [(model, "validation") for model in _BODY_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in definitions.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = [
    "INLINE_BODY_BYTES",
    "AllocationBody",
    "LookupBody",
    "ReportBody",
    "SolveBody",
    "add_body_schemas",
    "openapi_body",
    "parse_body",
]
