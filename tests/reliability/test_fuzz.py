"""Contract fuzzing, fast configuration: schemathesis against the live service on Redis.

A few hundred generated requests over every route (all phases, stateful sequences
included), with a token configured. The full run is `bench/fuzz.py --requests 10000`.
Each invariant of API.md is its own test so a failure names what broke.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.conftest import flush
from tests.reliability.fuzzing import FuzzResult, read_har, run_round, server_tracebacks
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess

TOKEN = "fuzz-token-5b1f0c"
SEED = 20250601
MAX_EXAMPLES = 4
ROUTES = {
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "POST /v1/solve",
    "PUT /v1/runs/{run_id}",
    "GET /v1/runs/{run_id}",
    "DELETE /v1/runs/{run_id}",
    "POST /v1/runs/{run_id}/allocations",
    "POST /v1/runs/{run_id}/outcomes",
    "POST /v1/runs/{run_id}/prompts/lookup",
    "GET /v1/runs/{run_id}/summary",
}


@pytest.fixture(scope="module")
def fuzzed(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FuzzResult, str]]:
    """One seeded round against a fresh service; its result and the service's log."""
    flush(redis_server)
    env = {
        "KRL_REDIS_URL": redis_server.url,
        "KRL_API_TOKENS": TOKEN,
        "KRL_METRICS_REQUIRE_TOKEN": "true",
        "KRL_MAX_PROMPTS": "1000",
    }
    with ServiceProcess(env) as service:
        result = run_round(
            service.url,
            tmp_path_factory.mktemp("fuzz"),
            token=TOKEN,
            max_examples=MAX_EXAMPLES,
            seed=SEED,
            shrink=False,
            timeout=240,
        )
        yield result, service.log_text()


def describe(findings: list) -> str:
    return "\n".join(
        f"{f.check} {f.operation}: {f.title} ({f.message.splitlines()[0] if f.message else ''})"
        f"\n  {f.request}"
        for f in findings
    )


def test_fuzzing_reaches_every_route_with_hundreds_of_requests(
    fuzzed: tuple[FuzzResult, str],
) -> None:
    result, _ = fuzzed
    assert result.requests >= 300, result.requests
    reached = {operation for operation in result.operations if operation in ROUTES}
    assert reached == ROUTES, ROUTES - reached
    assert result.statuses[200] > 0 and result.statuses[422] > 0


def test_no_response_is_a_server_error(fuzzed: tuple[FuzzResult, str]) -> None:
    result, log = fuzzed
    assert result.responses_5xx == 0, result.statuses
    assert server_tracebacks(log) == []


def test_every_error_has_the_contract_shape(fuzzed: tuple[FuzzResult, str]) -> None:
    result, _ = fuzzed
    assert result.check_runs["contract_error_shape"] == result.requests
    shape = [f for f in result.findings.values() if f.check == "contract_error_shape"]
    assert shape == [], describe(shape)


def test_responses_conform_to_the_schema(fuzzed: tuple[FuzzResult, str]) -> None:
    result, _ = fuzzed
    checks = {
        "response_schema_conformance",
        "content_type_conformance",
        "response_headers_conformance",
    }
    assert all(result.check_runs[check] > 0 for check in checks)
    broken = [f for f in result.findings.values() if f.check in checks]
    assert broken == [], describe(broken)


def test_every_status_is_documented_in_the_openapi_document(
    fuzzed: tuple[FuzzResult, str],
) -> None:
    result, _ = fuzzed
    assert result.check_runs["status_code_conformance"] > 0
    undocumented = [f for f in result.findings.values() if f.check == "status_code_conformance"]
    assert undocumented == [], describe(undocumented)


def test_a_deleted_run_stays_gone(fuzzed: tuple[FuzzResult, str]) -> None:
    result, _ = fuzzed
    stale = [f for f in result.findings.values() if f.check == "use_after_free"]
    assert stale == [], describe(stale)


def test_the_har_reader_counts_every_entry(tmp_path: Path) -> None:
    """Guards the counting the other tests rely on."""
    har = tmp_path / "r.har.json"
    entry = {
        "request": {"method": "GET", "url": "http://h:1/v1/runs/a%2Fb/summary"},
        "response": {"status": 404},
    }
    har.write_text(json.dumps({"log": {"entries": [entry] * 3}}))
    result = FuzzResult()
    read_har(har, result)
    assert result.requests == 3 and result.statuses[404] == 3
    assert result.operations["GET /v1/runs/{run_id}/summary"] == 3
