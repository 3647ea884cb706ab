"""A catalogue of hostile or malformed requests, by kind, and the status each gets.

Shared by `tests/reliability/test_security.py` (every one must get a 4xx in the
contract's shape) and `bench/bad_inputs.py` (prints the table for RELIABILITY.md).
The service under test is expected to run with `KRL_MAX_PROMPTS=MAX_PROMPTS`, a
token `TOKEN` for every run and `SCOPED_TOKEN` limited to runs `team-a-*`, and an
existing run `RUN` (see `prepare`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import httpx

TOKEN = "tok-full-9f8e7d6c5b4a"
SCOPED_TOKEN = "tok-scoped-0a1b2c3d4e"
MAX_PROMPTS = 50
RUN = "bad-inputs-run"
SERVICE_ENV = {
    "KRL_API_TOKENS": f"{TOKEN},{SCOPED_TOKEN}=team-a-*",
    "KRL_MAX_PROMPTS": str(MAX_PROMPTS),
    "KRL_METRICS_REQUIRE_TOKEN": "true",
}


@dataclass(frozen=True)
class BadInput:
    """One request that must be refused with a 4xx."""

    kind: str
    name: str
    method: str
    path: str
    body: bytes | None = None
    token: str | None = TOKEN
    content_type: str = "application/json"


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def run_path(run_id: str, suffix: str = "") -> str:
    """Path of a run with its id percent-encoded as one segment."""
    return f"/v1/runs/{quote(run_id, safe='')}{suffix}"


def _report(results: list[dict], **extra: object) -> bytes:
    return _json({"report_id": "r1", "step": 0, "results": results, **extra})


ALLOC = run_path(RUN, "/allocations")
OUTCOMES = run_path(RUN, "/outcomes")
LOOKUP = run_path(RUN, "/prompts/lookup")
OK_RESULT = {"prompt_id": "p", "successes": 1, "trials": 2}

CATALOGUE: tuple[BadInput, ...] = (
    # authentication and scope
    BadInput("auth", "no token", "POST", ALLOC, _json({"step": 0, "prompts": ["a"]}), None),
    BadInput("auth", "unknown token", "GET", run_path(RUN), token="not-a-token"),
    BadInput("auth", "scoped token, other run", "GET", run_path(RUN), token=SCOPED_TOKEN),
    BadInput("auth", "metrics without token", "GET", "/metrics", token=None),
    # identifiers
    BadInput("ids", "run id of 257 characters", "PUT", run_path("r" * 257), b"{}"),
    BadInput("ids", "empty prompt id", "POST", LOOKUP, _json({"prompt_ids": [""]})),
    BadInput(
        "ids", "prompt id of 257 characters", "POST", LOOKUP, _json({"prompt_ids": ["p" * 257]})
    ),
    BadInput(
        "ids",
        "report id of 257 characters",
        "POST",
        OUTCOMES,
        _json({"report_id": "r" * 257, "step": 0, "results": [OK_RESULT]}),
    ),
    BadInput("ids", "prompt id not a string", "POST", LOOKUP, _json({"prompt_ids": [17]})),
    # sizes
    BadInput(
        "limits",
        f"{MAX_PROMPTS + 1} prompts in an allocation",
        "POST",
        ALLOC,
        _json({"step": 0, "prompts": [f"p{i}" for i in range(MAX_PROMPTS + 1)]}),
    ),
    BadInput(
        "limits",
        f"{MAX_PROMPTS + 1} results in a report",
        "POST",
        OUTCOMES,
        _report([{**OK_RESULT, "prompt_id": f"p{i}"} for i in range(MAX_PROMPTS + 1)]),
    ),
    BadInput(
        "limits",
        f"{MAX_PROMPTS + 1} prompt ids in a lookup",
        "POST",
        LOOKUP,
        _json({"prompt_ids": [f"p{i}" for i in range(MAX_PROMPTS + 1)]}),
    ),
    BadInput(
        "limits",
        f"{MAX_PROMPTS + 1} success rates in a solve",
        "POST",
        "/v1/solve",
        _json({"success_rates": [0.5] * (MAX_PROMPTS + 1), "budget": 2 * (MAX_PROMPTS + 1)}),
    ),
    BadInput("limits", "empty prompt list", "POST", ALLOC, _json({"step": 0, "prompts": []})),
    BadInput(
        "limits",
        "4097 rewards in one group",
        "POST",
        OUTCOMES,
        _report([{"prompt_id": "p", "rewards": [1.0] * 4097}]),
    ),
    # numbers
    BadInput(
        "numbers", "NaN success rate", "POST", "/v1/solve", b'{"success_rates": [NaN], "budget": 2}'
    ),
    BadInput(
        "numbers",
        "Infinity budget",
        "POST",
        "/v1/solve",
        b'{"success_rates": [0.5], "budget": Infinity}',
    ),
    BadInput(
        "numbers",
        "-Infinity reward",
        "POST",
        OUTCOMES,
        b'{"report_id": "r", "step": 0, "results": [{"prompt_id": "p", "rewards": [-Infinity]}]}',
    ),
    BadInput(
        "numbers",
        "success rate 1.5",
        "POST",
        "/v1/solve",
        _json({"success_rates": [1.5], "budget": 2}),
    ),
    BadInput("numbers", "negative step", "POST", ALLOC, _json({"step": -1, "prompts": ["a"]})),
    BadInput("numbers", "step 2**31", "POST", ALLOC, _json({"step": 2**31, "prompts": ["a"]})),
    BadInput(
        "numbers",
        "step 10**400",
        "POST",
        ALLOC,
        b'{"step": 1' + b"0" * 400 + b', "prompts": ["a"]}',
    ),
    BadInput(
        "numbers",
        "budget 1e308 * 10",
        "POST",
        "/v1/solve",
        b'{"success_rates": [0.5], "budget": 1e309}',
    ),
    BadInput(
        "numbers",
        "successes > trials",
        "POST",
        OUTCOMES,
        _report([{"prompt_id": "p", "successes": 3, "trials": 2}]),
    ),
    BadInput(
        "numbers",
        "trials 0",
        "POST",
        OUTCOMES,
        _report([{"prompt_id": "p", "successes": 0, "trials": 0}]),
    ),
    BadInput("numbers", "max_n 5000", "PUT", run_path(RUN), _json({"max_n": 5000})),
    BadInput(
        "numbers", "workers 0", "POST", ALLOC, _json({"step": 0, "prompts": ["a"], "workers": 0})
    ),
    BadInput(
        "numbers",
        "budget beyond feasible range",
        "POST",
        "/v1/solve",
        _json({"success_rates": [0.5], "budget": 10**6}),
    ),
    BadInput("numbers", "summary last=0", "GET", run_path(RUN, "/summary?last=0")),
    # JSON structure
    BadInput("json", "nesting depth 100000", "POST", "/v1/solve", b"[" * 100_000 + b"]" * 100_000),
    BadInput(
        "json",
        "nested objects depth 5000 in a field",
        "PUT",
        run_path(RUN),
        b'{"estimator": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
    ),
    BadInput("json", "truncated JSON", "POST", "/v1/solve", b'{"success_rates": [0.5'),
    BadInput("json", "not UTF-8", "POST", "/v1/solve", b"\xb0\xac\x14U\xdf\x8c"),
    BadInput("json", "top level array", "POST", ALLOC, b"[1, 2, 3]"),
    BadInput("json", "unknown field", "PUT", run_path(RUN), _json({"max_N": 64})),
    BadInput("json", "prompt id of 1 MB", "POST", LOOKUP, _json({"prompt_ids": ["x" * 1_000_000]})),
    BadInput(
        "json",
        "form content type",
        "POST",
        "/v1/solve",
        b"budget=2",
        content_type="application/x-www-form-urlencoded",
    ),
    # routing and methods
    BadInput("routing", "unknown run", "GET", run_path("never-created")),
    BadInput("routing", "unknown route", "GET", "/v1/nothing"),
    BadInput("routing", "PATCH on a run", "PATCH", run_path(RUN), b"{}"),
    BadInput("routing", "path traversal in run id", "GET", "/v1/runs/..%2F..%2Fmetrics"),
)


@dataclass(frozen=True)
class Outcome:
    """What the service answered to one bad input."""

    bad: BadInput
    status: int
    code: str | None


def prepare(client: httpx.Client) -> None:
    """Create the run the catalogue refers to."""
    response = client.put(run_path(RUN), json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    response.raise_for_status()


def send(client: httpx.Client, bad: BadInput) -> Outcome:
    """Send one bad input; its status and error code (None if the body is not the shape)."""
    headers = {"Content-Type": bad.content_type} if bad.body is not None else {}
    if bad.token is not None:
        headers["Authorization"] = f"Bearer {bad.token}"
    response = client.request(bad.method, bad.path, content=bad.body, headers=headers)
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    return Outcome(bad, response.status_code, code)


def send_all(client: httpx.Client) -> list[Outcome]:
    """Every bad input of the catalogue, in order."""
    prepare(client)
    return [send(client, bad) for bad in CATALOGUE]


__all__ = [
    "CATALOGUE",
    "MAX_PROMPTS",
    "RUN",
    "SCOPED_TOKEN",
    "SERVICE_ENV",
    "TOKEN",
    "BadInput",
    "Outcome",
    "prepare",
    "run_path",
    "send",
    "send_all",
]
