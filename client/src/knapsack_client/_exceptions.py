"""The client's one exception tree, and the one place lower-layer errors map into it.

```
KnapsackError                 anything the client raises
├── ServiceUnavailable        no answer: connect error, timeout, 408/429/502/503/504 after retries
│   └── ServerError           an answer, but a 5xx that is a service bug (500): not retried
├── InvalidRequest            400/413/422 or a request the client refused to send: never retried
├── RunNotFound               404 run_not_found: call ensure_run() first
└── Unauthorized              401/403: missing, wrong or out-of-scope token (`.status`)
```

The split follows what a trainer can do about each: wait (ServiceUnavailable),
fix its code (InvalidRequest), create the run (RunNotFound) or fix its token
(Unauthorized). Mapping lives here only, as httpx keeps `map_httpcore_exceptions`
in one place (encode/httpx: `httpx/_transports/default.py`), so the sync and async
clients cannot drift apart.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pydantic

#: Statuses that mean "not now": retried with backoff, honouring Retry-After.
#: 502 and 504 are what a proxy in front of a restarting service answers; 408 is
#: a server that gave up waiting for the request (RFC 9110 §15.5.9).
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
#: Statuses that mean the request itself is wrong and can never succeed as sent.
INVALID_REQUEST_STATUSES = frozenset({400, 405, 409, 413, 415, 422})


class KnapsackError(Exception):
    """Base of every error the client raises.

    Attributes:
        message: Human-readable explanation (the service's message where there is one).
        status: HTTP status of the answer, None when no answer came.
        code: The service's error code (`run_not_found`, `validation_error`, ...).
        details: The service's `details`, as sent.

    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details


class ServiceUnavailable(KnapsackError):
    """The service could not be reached or asked the client to come back later.

    Attributes:
        retry_after: Seconds the service asked to wait (Retry-After), if it said.

    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ServiceUnavailable):
    """The service answered with a 5xx that is not a "come back later" (a bug).

    It is a ServiceUnavailable so that a trainer catching that one keeps training
    (allocate falls back to uniform, the journal keeps the report), but it is not
    retried: repeating a request that crashed the service helps no one.
    """


class InvalidRequest(KnapsackError):
    """The request is wrong and will never succeed as sent.

    Attributes:
        field: Dotted path of the offending field (`results.0.trials`), if known.

    """

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class RunNotFound(KnapsackError):
    """The run was never created (or was deleted): call `ensure_run()` at start-up."""


class Unauthorized(KnapsackError):
    """The token is missing, wrong (401) or not allowed this run (403)."""


# --------------------------------------------------------------------------- mapping


def map_transport_error(exc: httpx.HTTPError, url: str = "") -> KnapsackError:
    """Map an httpx exception raised before any answer arrived.

    Timeouts and network errors (refused, reset, DNS) become ServiceUnavailable,
    which the retry policy retries; protocol errors on our side (bad URL scheme)
    are plain KnapsackError, since waiting does not fix a configuration error.
    """
    where = f" ({url})" if url else ""
    if isinstance(exc, httpx.TimeoutException):
        return ServiceUnavailable(f"timed out{where}: {exc!r}")
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return ServiceUnavailable(f"cannot reach the service{where}: {exc!r}")
    return KnapsackError(f"request failed{where}: {exc!r}")


def map_validation_error(exc: pydantic.ValidationError) -> InvalidRequest:
    """Map a request the client refused to send (local validation) to InvalidRequest.

    The field path uses the same dotted form as the service's 422 details, so a
    caller handles both alike.
    """
    errors = [
        {**err, "msg": str(err.get("msg", "invalid value")).removeprefix("Value error, ")}
        for err in exc.errors()
    ]
    fields = [_blamed(err) for err in errors]
    messages = [
        f"{field or '<request>'}: {err.get('msg', '')}"
        for field, err in zip(fields, errors, strict=True)
    ]
    return InvalidRequest(
        "invalid request: " + "; ".join(messages),
        field=next((field for field in fields if field), None),
        status=None,
        code="validation_error",
        details=[
            {"field": field, "message": err.get("msg", "")}
            for field, err in zip(fields, errors, strict=True)
        ],
    )


def _blamed(error: Mapping[str, Any]) -> str:
    """A local error's dotted field, with what a cross-field check names (`FieldError`)."""
    field = _dotted(error.get("loc", ()))
    blamed = getattr((error.get("ctx") or {}).get("error"), "field", None)
    if isinstance(blamed, str) and blamed:
        return f"{field}.{blamed}" if field else blamed
    return field


def error_from_response(response: httpx.Response) -> KnapsackError | None:
    """Return the error an answer stands for, or None for a 2xx.

    Reads the service's body `{"error": {"code", "message", "details"}}`, and
    FastAPI's default `{"detail": ...}` defensively (a proxy or an unhandled route
    may answer with either, or with no JSON at all).
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    code, message, details = _read_error_body(response)
    text = f"HTTP {status} {response.request.method} {response.request.url.path}: {message}"
    common: dict[str, Any] = {"status": status, "code": code, "details": details}
    if status in (401, 403):
        return Unauthorized(text, **common)
    if status == 404 and code == "run_not_found":
        return RunNotFound(text, **common)
    if status in RETRYABLE_STATUSES:
        return ServiceUnavailable(
            text, retry_after=parse_retry_after(response.headers.get("retry-after")), **common
        )
    if status >= 500:
        return ServerError(text, **common)
    if status in INVALID_REQUEST_STATUSES or (400 <= status < 500 and status != 404):
        return InvalidRequest(text, field=_first_field(details), **common)
    # A 404 that is not run_not_found means the URL is wrong (base URL, proxy
    # prefix): a configuration error rather than a wrong request.
    return KnapsackError(text, **common)


def is_final_refusal(error: KnapsackError) -> bool:
    """Whether the service answered that this request can never succeed as sent.

    Every 4xx but 408 and 429 ("not now"): resending the same report cannot
    change the answer, so the journal drops it instead of resending it forever.
    A 5xx is kept: a fixed or redeployed service may take the report later.
    """
    status = error.status
    return status is not None and 400 <= status < 500 and status not in RETRYABLE_STATUSES


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date, RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _read_error_body(response: httpx.Response) -> tuple[str | None, str, Any]:
    try:
        body = response.json()
    except ValueError:
        return None, (response.text[:200] or response.reason_phrase), None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return (
                _as_str(error.get("code")),
                str(error.get("message") or response.reason_phrase),
                error.get("details"),
            )
        if "detail" in body:  # FastAPI's default shape
            detail = body["detail"]
            if isinstance(detail, str):
                return None, detail, None
            return "validation_error", _summarize(detail), detail
    return None, response.reason_phrase, body


def _first_field(details: Any) -> str | None:
    """The first offending field named in error details, in either known shape."""
    items: Sequence[Any]
    if isinstance(details, Mapping):
        items = details.get("errors") or [details]
    elif isinstance(details, Sequence) and not isinstance(details, str):
        items = details
    else:
        return None
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("field"), str):
            return item["field"]
        if isinstance(item.get("loc"), Sequence):
            field = _dotted(item["loc"])
            if field:
                return field
    return None


def _summarize(detail: Any) -> str:
    if isinstance(detail, Sequence):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                field = item.get("field") or _dotted(item.get("loc") or ())
                parts.append(f"{field}: {item.get('message') or item.get('msg') or ''}")
        if parts:
            return "; ".join(parts)
    return str(detail)


_LOCATION_PREFIXES = frozenset({"body", "query", "path", "header"})


def _dotted(loc: Sequence[Any]) -> str:
    """`["body", "results", 0, "trials"]` -> `"results.0.trials"`."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in _LOCATION_PREFIXES:
        parts = parts[1:]
    return ".".join(parts)


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


__all__ = [
    "InvalidRequest",
    "KnapsackError",
    "RunNotFound",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
    "is_final_refusal",
]
