"""Retry, backoff and failure mapping of KnapsackClient on scripted failure sequences."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from knapsack_client import (
    InvalidRequest,
    Journal,
    KnapsackClient,
    ServerError,
    ServiceUnavailable,
)
from tests.client.scripted import ACK, RESULTS, Script, error, invalid, ok, unavailable

URL = "http://krl.test"


def make_client(script: Script, **kwargs: object) -> KnapsackClient:
    http = httpx.Client(transport=script.transport())
    kwargs.setdefault("retry", script.policy())
    return KnapsackClient(URL, http_client=http, **kwargs)  # type: ignore[arg-type]


def test_503_twice_then_success_is_retried() -> None:
    script = Script([unavailable(), unavailable(), ok(ACK)])
    ack = make_client(script).report("run", 0, RESULTS)
    assert ack.accepted == 1
    assert len(script.requests) == 3
    # Full jitter with random() = 0.5: half of base * 2**retry.
    assert script.sleeps == [pytest.approx(0.05), pytest.approx(0.1)]


def test_retries_resend_the_same_report_id() -> None:
    script = Script([unavailable(), ok(ACK)])
    make_client(script).report("run", 3, RESULTS, worker="w")
    bodies = [json.loads(request.content) for request in script.requests]
    assert bodies[0]["report_id"] == bodies[1]["report_id"]


def test_retry_after_is_honoured() -> None:
    script = Script([unavailable(retry_after="2"), ok(ACK)])
    make_client(script).report("run", 0, RESULTS)
    assert script.sleeps == [2.0]


def test_retry_after_is_capped() -> None:
    script = Script([error(429, "overloaded", **{"Retry-After": "600"}), ok(ACK)])
    make_client(script, retry=script.policy(max_retry_after=3.0)).report("run", 0, RESULTS)
    assert script.sleeps == [3.0]


def test_backoff_is_capped_by_max_delay() -> None:
    script = Script([unavailable()])
    with pytest.raises(ServiceUnavailable):
        make_client(script, retry=script.policy(max_attempts=6, max_delay=0.3)).solve(
            {"success_rates": [0.5], "budget": 2}
        )
    assert len(script.requests) == 6
    assert script.sleeps == pytest.approx([0.05, 0.1, 0.15, 0.15, 0.15])


def test_connect_errors_are_retried_then_raised() -> None:
    script = Script([httpx.ConnectError])
    with pytest.raises(ServiceUnavailable) as caught:
        make_client(script, retry=script.policy(max_attempts=3)).lookup("run", ["p"])
    assert len(script.requests) == 3
    assert caught.value.status is None


def test_timeouts_are_retried() -> None:
    script = Script([httpx.ReadTimeout, ok({"prompts": []})])
    assert make_client(script).lookup("run", ["p"]).prompts == []
    assert len(script.requests) == 2


def test_422_is_not_retried_and_names_the_field() -> None:
    script = Script([invalid("results.0.trials")])
    with pytest.raises(InvalidRequest) as caught:
        make_client(script).report("run", 0, RESULTS)
    assert len(script.requests) == 1
    assert caught.value.field == "results.0.trials"
    assert script.sleeps == []


def test_fastapi_default_422_shape_is_understood() -> None:
    detail = [{"loc": ["body", "prompts", 0], "msg": "too long", "type": "string_too_long"}]
    script = Script([httpx.Response(422, json={"detail": detail})])
    with pytest.raises(InvalidRequest) as caught:
        make_client(script).lookup("run", ["p"])
    assert caught.value.field == "prompts.0"


def test_500_is_a_server_error_and_not_retried() -> None:
    script = Script([error(500, "internal")])
    with pytest.raises(ServerError):
        make_client(script).report("run", 0, RESULTS)
    assert len(script.requests) == 1


def test_allocate_uses_its_shorter_budget_then_falls_back() -> None:
    script = Script([unavailable()])
    client = make_client(script)
    answer = client.allocate("run", 4, ["a", "b", "c"], budget=10, workers=2)
    assert len(script.requests) == client.allocate_retry.max_attempts == 2
    assert answer.degraded and answer.strategy == "uniform"
    assert answer.reason is not None and answer.reason.startswith("service unreachable")
    assert [a.n for a in answer.allocations] == [4, 3, 3]
    assert answer.shards is not None
    assert [sum(count for _, count in shard) for shard in answer.shards] == [5, 5]


def test_allocate_raises_for_a_wrong_request() -> None:
    script = Script([invalid("budget")])
    with pytest.raises(InvalidRequest):
        make_client(script).allocate("run", 0, ["a"], budget=1)


def test_fallback_warning_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    script = Script([httpx.ConnectError])
    client = make_client(script)
    with caplog.at_level(logging.WARNING, logger="knapsack_client"):
        for step in range(3):
            assert client.allocate("run", step, ["a"]).degraded
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


def test_invalid_report_is_dropped_from_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "reports.jsonl"
    script = Script([invalid("results.0.prompt_id")])
    client = make_client(script, journal_path=journal)
    with caplog.at_level(logging.ERROR, logger="knapsack_client"), pytest.raises(InvalidRequest):
        client.report("run", 0, RESULTS)
    assert Journal(journal).pending() == []
    assert any("dropped" in record.getMessage() for record in caplog.records)


def test_unreachable_report_stays_in_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "reports.jsonl"
    script = Script([unavailable()])
    client = make_client(script, journal_path=journal, retry=script.policy(max_attempts=2))
    with pytest.raises(ServiceUnavailable):
        client.report("run", 0, RESULTS)
    (entry,) = Journal(journal).pending()
    assert entry.run_id == "run"
    assert entry.body == json.loads(script.requests[-1].content)


def test_408_is_retried_and_a_refused_report_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """408 means "not now" (retried, kept); 409 means never (dropped with a logged error)."""
    journal = tmp_path / "reports.jsonl"
    script = Script([error(408, "request_timeout"), ok(ACK)])
    assert make_client(script, journal_path=journal).report("run", 0, RESULTS).accepted == 1
    assert len(script.requests) == 2 and Journal(journal).pending() == []
    script = Script([error(409, "report_conflict", details=[{"field": "report_id"}])])
    with caplog.at_level(logging.ERROR, logger="knapsack_client"), pytest.raises(InvalidRequest):
        make_client(script, journal_path=journal).report("run", 1, RESULTS)
    assert Journal(journal).pending() == []
    assert any("dropped" in record.getMessage() for record in caplog.records)
