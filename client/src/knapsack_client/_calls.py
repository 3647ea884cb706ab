"""The requests the client sends and how their answers are read: no I/O here.

Every public call of both clients is built here as a `Call` (method, path, JSON
body, model of the answer) from arguments validated locally, so what the service
would refuse is never sent, nor journaled.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pydantic

from knapsack_client._exceptions import (
    InvalidRequest,
    KnapsackError,
    error_from_response,
    map_validation_error,
)
from knapsack_client._journal import JournalEntry
from knapsack_client._models import (
    AllocationRequest,
    AllocationResponse,
    LookupRequest,
    LookupResponse,
    OutcomeAck,
    OutcomeReport,
    PromptResult,
    RunInfo,
    RunSettings,
    RunSummary,
    SolveRequest,
    SolveResponse,
)

ENV_URL = "KRL_URL"
ENV_TOKEN = "KRL_TOKEN"
#: Where the service listens by default (`knapsack-service serve`).
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: Prefix and length (hex characters) of derived report ids.
REPORT_ID_PREFIX = "krl-"
REPORT_ID_HEX_LENGTH = 32
USER_AGENT = "knapsack-client/0.1.0"
#: Longest run or prompt id the service accepts.
MAX_IDENTIFIER_LENGTH = 256

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def read_environment() -> tuple[str | None, str | None]:
    """The service URL and token from `KRL_URL` / `KRL_TOKEN` (the only read of os.environ)."""
    return os.environ.get(ENV_URL) or None, os.environ.get(ENV_TOKEN) or None


def derive_report_id(run_id: str, step: int, worker: str | int = "0", attempt: int = 0) -> str:
    """A report id that is the same every time the same step is reported.

    The service counts a report_id once, so deriving it from what identifies the
    report (rather than drawing it at random) makes every resend — a retry after
    a timeout, a journal replay, a trainer restarted from a checkpoint — a
    recognised duplicate. Bump `attempt` to report the same step again on purpose
    (e.g. a re-rollout after a checkpoint rewind whose outcomes should count).
    """
    key = json.dumps([run_id, int(step), str(worker), int(attempt)], separators=(",", ":"))
    digest = hashlib.sha256(key.encode()).hexdigest()
    return REPORT_ID_PREFIX + digest[:REPORT_ID_HEX_LENGTH]


def quote_segment(value: str) -> str:
    """Percent-escape one path segment, so `a/b` or `..` stays one run id."""
    quoted = urllib.parse.quote(value, safe="")
    if quoted in (".", ".."):  # dot segments would be removed by URL normalisation
        quoted = quoted.replace(".", "%2E")
    return quoted


@dataclass(frozen=True)
class Call:
    """One request the client sends and the model its answer is read into."""

    method: str
    path: str
    body: dict[str, Any] | None
    model: type[pydantic.BaseModel] | None


def validate(model: type[ModelT], data: Any) -> ModelT:
    """Validate a request locally, as the service would, raising InvalidRequest."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise map_validation_error(exc) from None


def dump(model: pydantic.BaseModel) -> dict[str, Any]:
    """The JSON body of a validated request (unset optional fields left out)."""
    return model.model_dump(mode="json", exclude_none=True)


def check_identifier(name: str, value: str) -> None:
    """Refuse a run id the service would refuse, before it goes into a URL."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_IDENTIFIER_LENGTH:
        raise InvalidRequest(
            f"{name} must be a string of 1 to {MAX_IDENTIFIER_LENGTH} characters", field=name
        )


def run_path(run_id: str, *rest: str) -> str:
    """`/v1/runs/<run_id>/<rest...>` with the run id escaped as one segment."""
    check_identifier("run_id", run_id)
    return "/v1/runs/" + quote_segment(run_id) + "".join("/" + part for part in rest)


def put_run(run_id: str, settings: RunSettings) -> Call:
    """`PUT /v1/runs/{run_id}`."""
    return Call("PUT", run_path(run_id), dump(settings), RunInfo)


def get_run(run_id: str) -> Call:
    """`GET /v1/runs/{run_id}`."""
    return Call("GET", run_path(run_id), None, RunInfo)


def delete_run(run_id: str) -> Call:
    """`DELETE /v1/runs/{run_id}`."""
    return Call("DELETE", run_path(run_id), None, None)


def allocate(run_id: str, request: AllocationRequest) -> Call:
    """`POST /v1/runs/{run_id}/allocations`."""
    return Call("POST", run_path(run_id, "allocations"), dump(request), AllocationResponse)


def allocation_request(step: int, prompts: Sequence[str], **options: Any) -> AllocationRequest:
    """The validated allocation request (options: budget, workers, strategy, min_n...)."""
    return validate(AllocationRequest, {"step": step, "prompts": list(prompts), **options})


def report_entry(
    run_id: str,
    step: int,
    results: Sequence[PromptResult | Mapping[str, Any]],
    *,
    report_id: str | None,
    worker: str | int,
    attempt: int,
) -> JournalEntry:
    """A validated report, as the journal keeps it and the service receives it."""
    check_identifier("run_id", run_id)
    if report_id is None:
        report_id = derive_report_id(run_id, step, worker, attempt)
    report = validate(
        OutcomeReport,
        {"report_id": report_id, "step": step, "results": list(results), "worker": str(worker)},
    )
    return JournalEntry(report.report_id, run_id, dump(report))


def report(entry: JournalEntry) -> Call:
    """`POST /v1/runs/{run_id}/outcomes` of a journal entry."""
    return Call("POST", run_path(entry.run_id, "outcomes"), entry.body, OutcomeAck)


def lookup(run_id: str, prompt_ids: Sequence[str]) -> Call:
    """`POST /v1/runs/{run_id}/prompts/lookup`."""
    body = dump(validate(LookupRequest, {"prompt_ids": list(prompt_ids)}))
    return Call("POST", run_path(run_id, "prompts", "lookup"), body, LookupResponse)


def summary(run_id: str) -> Call:
    """`GET /v1/runs/{run_id}/summary`."""
    return Call("GET", run_path(run_id, "summary"), None, RunSummary)


def solve(request: SolveRequest | Mapping[str, Any]) -> Call:
    """`POST /v1/solve`."""
    return Call("POST", "/v1/solve", dump(validate(SolveRequest, request)), SolveResponse)


def headers(token: str | None) -> dict[str, str]:
    """Headers of every request (a bearer token when one is set)."""
    sent = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    return sent


def parse(call: Call, response: httpx.Response) -> Any:
    """The answer's model, or raise the error the answer stands for."""
    error = error_from_response(response)
    if error is not None:
        raise error
    if call.model is None:
        return None
    try:
        return call.model.model_validate(response.json())
    except (ValueError, pydantic.ValidationError) as exc:
        raise KnapsackError(
            f"unexpected answer to {call.method} {call.path}: {exc}",
            status=response.status_code,
        ) from None
