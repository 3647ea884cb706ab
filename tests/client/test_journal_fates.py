"""What becomes of journaled reports against the real service (issue 12, items 5 and 8).

- A report the service refuses for good (a 4xx other than 408/429) is dropped
  from the journal with a logged error, not resent at every replay.
- allocate() never replays the journal: during a Redis outage the service still
  answers allocations (degraded 200), and a replay inside allocate() would wait
  out every report's 503 retries (about 7 s per call before).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from knapsack_client import AsyncKnapsackClient, Journal, KnapsackClient, RetryPolicy
from knapsack_client._exceptions import KnapsackError, is_final_refusal
from knapsack_service.main import create_app
from tests.client.conftest import NO_WAIT, LiveServer, _asgi_client, make_settings
from tests.client.test_live import EXPECTED_ONCE, counts, journal_as_if_crashed
from tests.support.fixtures import redis_server, redis_url  # noqa: F401
from tests.support.redis_server import RedisServer

#: Reports left pending in the journal by the outage test.
PENDING_REPORTS = 40


def paths_sent(http: httpx.Client) -> list[str]:
    """Record the path of every request `http` sends from now on."""
    sent: list[str] = []
    http.event_hooks["request"].append(lambda request: sent.append(request.url.path))
    return sent


def test_refused_reports_are_dropped_not_replayed_forever(
    live_server: LiveServer, run_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "reports.jsonl"
    with KnapsackClient(live_server.url, retry=NO_WAIT) as setup:
        setup.ensure_run(run_id)
        setup.ensure_run(run_id + "-deleted")
        setup.delete_run(run_id + "-deleted")
    refused = journal_as_if_crashed(journal, run_id + "-deleted", 0)  # 404 run_not_found
    journal_as_if_crashed(journal, run_id, 0)
    with (
        KnapsackClient(live_server.url, retry=NO_WAIT, journal_path=journal) as client,
        caplog.at_level(logging.ERROR, logger="knapsack_client"),
    ):
        assert client.replay_journal() == 1
        assert Journal(journal).pending() == []  # before: the refused report stayed for good
        assert client.replay_journal() == 0
        assert counts(client, run_id) == EXPECTED_ONCE
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and refused.report_id in dropped[0]


def test_a_refused_report_is_dropped_by_the_catch_up_replay_too(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    journal_as_if_crashed(journal, run_id + "-never-created", 3)
    with KnapsackClient(live_server.url, retry=NO_WAIT, journal_path=journal) as client:
        client.ensure_run(run_id)  # the first success catches up on the journal
    assert Journal(journal).pending() == []


@pytest.mark.parametrize(
    ("status", "final"),
    [
        *[(status, True) for status in (400, 401, 403, 404, 409, 413, 422)],
        *[(status, False) for status in (408, 429, 500, 503, None)],
    ],
)
def test_final_refusals_are_the_4xx_but_408_and_429(status: int | None, final: bool) -> None:
    assert is_final_refusal(KnapsackError("x", status=status)) is final


@pytest.fixture
def redis_app(redis_url: str) -> Iterator[TestClient]:  # noqa: F811
    """The real app on the real Redis store (0.2 s socket timeout)."""
    settings = make_settings(redis_url=redis_url, redis_timeout=0.2)
    with TestClient(create_app(settings)) as http:
        yield http


def test_allocate_never_replays_the_journal_during_a_redis_outage(
    redis_app: TestClient,
    redis_server: RedisServer,  # noqa: F811
    run_id: str,
    tmp_path: Path,
) -> None:
    journal = tmp_path / "reports.jsonl"
    with KnapsackClient(http_client=redis_app, retry=NO_WAIT) as setup:
        setup.ensure_run(run_id)
    for step in range(PENDING_REPORTS):
        journal_as_if_crashed(journal, run_id, step)
    patient = RetryPolicy(max_attempts=5, base_delay=0.2, max_delay=2.0)  # the default's shape
    client = KnapsackClient(http_client=redis_app, retry=patient, journal_path=journal)
    sent = paths_sent(redis_app)
    redis_server.pause()
    try:
        started = time.perf_counter()
        answers = [client.allocate(run_id, step, ["a", "b", "c"]) for step in range(3)]
        elapsed = time.perf_counter() - started
    finally:
        redis_server.resume()
    print(f"3 allocate() calls with {PENDING_REPORTS} pending reports: {elapsed:.2f} s")
    assert all(answer.degraded for answer in answers)  # the service's degraded 200s
    # Before, the first allocate() resent the journal and waited out every retry.
    assert not [path for path in sent if path.endswith("/outcomes")]
    assert len(Journal(journal).pending()) == PENDING_REPORTS
    # Once Redis answers, the next call other than allocate() catches up, each once.
    client.get_run(run_id)
    assert Journal(journal).pending() == []
    info = client.get_run(run_id)
    assert info.counters.reports == PENDING_REPORTS


def test_catch_up_replay_tries_each_report_once_then_waits(
    redis_app: TestClient,
    redis_server: RedisServer,  # noqa: F811
    run_id: str,
    tmp_path: Path,
) -> None:
    """A catch-up after a success costs one request when the service fails again."""
    journal = tmp_path / "reports.jsonl"
    with KnapsackClient(http_client=redis_app, retry=NO_WAIT) as setup:
        setup.ensure_run(run_id)
    for step in range(3):
        journal_as_if_crashed(journal, run_id, step)
    patient = RetryPolicy(max_attempts=5, base_delay=0.0, max_delay=0.0)
    client = KnapsackClient(http_client=redis_app, retry=patient, journal_path=journal)
    sent = paths_sent(redis_app)
    redis_server.pause()
    try:
        client.solve({"success_rates": [0.5], "budget": 2})  # answered without Redis
    finally:
        redis_server.resume()
    # One try of the oldest report (503), then the replay waits for the next success;
    # before, it ran the full retry sequence inside solve().
    assert [path for path in sent if path.endswith("/outcomes")] == [sent[1]]
    assert len(Journal(journal).pending()) == 3


# --------------------------------------------------------------------------- async twin


@pytest.mark.anyio
async def test_async_client_drops_refused_reports_too(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    journal_as_if_crashed(journal, run_id + "-never-created", 0)
    journal_as_if_crashed(journal, run_id, 0)
    async with AsyncKnapsackClient(live_server.url, retry=NO_WAIT, journal_path=journal) as client:
        await client.ensure_run(run_id)  # catches up: one applied, one refused and dropped
    assert Journal(journal).pending() == []


@pytest.mark.anyio
async def test_async_allocate_never_replays_the_journal_during_a_redis_outage(
    redis_url: str,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    run_id: str,
    tmp_path: Path,
) -> None:
    journal = tmp_path / "reports.jsonl"
    settings = make_settings(redis_url=redis_url, redis_timeout=0.2)
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async for http in _asgi_client(create_app(settings)):
        async with AsyncKnapsackClient(http_client=http, retry=NO_WAIT) as setup:
            await setup.ensure_run(run_id)
        for step in range(5):
            journal_as_if_crashed(journal, run_id, step)
        http.event_hooks["request"].append(record)
        client = AsyncKnapsackClient(http_client=http, retry=NO_WAIT, journal_path=journal)
        redis_server.pause()
        try:
            answer = await client.allocate(run_id, 0, ["a", "b"])
        finally:
            redis_server.resume()
        assert answer.degraded
        assert not [path for path in sent if path.endswith("/outcomes")]
        await client.get_run(run_id)  # Redis is back: the catch-up delivers all five
        assert Journal(journal).pending() == []
