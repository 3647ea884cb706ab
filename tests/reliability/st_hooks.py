"""Schemathesis hooks: the contract's error shape, checked on every error response.

Loaded by the `st` CLI through `SCHEMATHESIS_HOOKS=tests.reliability.st_hooks`.
Schemathesis validates documented responses against their schema; this check also
covers the statuses the OpenAPI document does not list (400, 405, 413, 429, 5xx):
API.md promises `{"error": {"code", "message", "details"}}` for every error.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

CHECK_NAME = "contract_error_shape"


def error_shape_problem(status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an error response, or None when it has the contract's shape."""
    if status < 400:
        return None
    if not content_type.startswith("application/json"):
        return f"status {status} with content-type {content_type!r}, expected application/json"
    try:
        document: Any = json.loads(body)
    except ValueError:
        return f"status {status} with a body that is not JSON: {body[:200]!r}"
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict) or set(document) != {"error"}:
        return f"status {status}: body is not {{'error': {{...}}}}: {body[:200]!r}"
    missing = {"code", "message", "details"} - set(error)
    if missing:
        return f"status {status}: error lacks {sorted(missing)}: {body[:200]!r}"
    if not isinstance(error["code"], str) or not error["code"]:
        return f"status {status}: error.code is not a non-empty string"
    if not isinstance(error["message"], str) or not error["message"]:
        return f"status {status}: error.message is not a non-empty string"
    return None


@schemathesis.check
def contract_error_shape(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Every 4xx/5xx answers `{"error": {"code", "message", "details"}}` as JSON."""
    content_type = (response.headers.get("content-type") or [""])[0]
    problem = error_shape_problem(response.status_code, content_type, response.content)
    if problem is not None:
        raise AssertionError(problem)
    return None
