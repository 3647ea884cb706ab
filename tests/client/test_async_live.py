"""AsyncKnapsackClient over real HTTP to uvicorn: outages, restarts, fallback, replay."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from knapsack_client import (
    AsyncKnapsackClient,
    Journal,
    ServiceUnavailable,
)
from tests.client.conftest import NO_WAIT, LiveServer
from tests.client.test_live import EXPECTED_ONCE, PATIENT, RESULTS, journal_as_if_crashed

pytestmark = pytest.mark.anyio


async def counts(client: AsyncKnapsackClient, run_id: str) -> dict[str, tuple[int, int]]:
    answer = await client.lookup(run_id, [r["prompt_id"] for r in RESULTS])
    return {p.prompt_id: (p.successes, p.trials) for p in answer.prompts}


async def test_report_during_outage_is_counted_once_after_restart(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    async with AsyncKnapsackClient(live_server.url, retry=NO_WAIT, journal_path=journal) as client:
        await client.ensure_run(run_id)
        live_server.stop()
        with pytest.raises(ServiceUnavailable):
            await client.report(run_id, 0, RESULTS)
        assert len(Journal(journal).pending()) == 1
        live_server.start()
        await client.get_run(run_id)  # the first answer after the outage resends the journal
        assert Journal(journal).pending() == []
        assert await counts(client, run_id) == EXPECTED_ONCE
        # The trainer retrying the step by hand is recognised as the same report.
        assert (await client.report(run_id, 0, RESULTS)).duplicate
        assert await counts(client, run_id) == EXPECTED_ONCE


async def test_retries_ride_out_a_restart(live_server: LiveServer, run_id: str) -> None:
    async with AsyncKnapsackClient(live_server.url, retry=PATIENT) as client:
        await client.ensure_run(run_id)
        live_server.stop()
        restart = threading.Timer(0.3, live_server.start)
        restart.start()
        try:
            ack = await client.report(run_id, 0, RESULTS)
        finally:
            restart.join()
        assert ack.accepted == 2 and not ack.duplicate
        assert await counts(client, run_id) == EXPECTED_ONCE


async def test_allocate_falls_back_when_nothing_listens(
    dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prompts = ["a", "b", "c", "d", "e"]
    async with AsyncKnapsackClient(dead_url, retry=NO_WAIT) as client:
        caplog.set_level(logging.WARNING, logger="knapsack_client")
        first = await client.allocate("run", 0, prompts, budget=23, workers=3)
        second = await client.allocate("run", 1, prompts)
    assert first.degraded and first.strategy == "uniform"
    assert first.reason is not None and first.reason.startswith("service unreachable:")
    assert [a.n for a in first.allocations] == [5, 5, 5, 4, 4]
    assert first.shards is not None
    loads = sorted(sum(count for _, count in shard) for shard in first.shards)
    assert loads == [7, 8, 8]
    assert second.budget == len(prompts) * 8  # no budget, no cached settings: 8 each
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_fallback_honours_ensure_run_settings_when_never_reached(dead_url: str) -> None:
    """Regression: the settings given to ensure_run bind the fallback from step 0 on."""
    async with AsyncKnapsackClient(dead_url, retry=NO_WAIT) as client:
        with pytest.raises(ServiceUnavailable):
            await client.ensure_run("run", {"max_n": 16})
        answer = await client.allocate("run", 0, ["a", "b", "c"], budget=300)
    assert answer.degraded
    assert [a.n for a in answer.allocations] == [16, 16, 16]  # was [100, 100, 100]


async def test_fallback_uses_the_settings_cached_by_ensure_run(
    live_server: LiveServer, run_id: str
) -> None:
    async with AsyncKnapsackClient(live_server.url, retry=NO_WAIT) as client:
        await client.ensure_run(run_id, {"budget": 20, "default_n": 4})
        assert not (await client.allocate(run_id, 0, ["a", "b", "c", "d", "e"])).degraded
        live_server.stop()
        answer = await client.allocate(run_id, 1, ["a", "b", "c"])
        assert answer.degraded and answer.budget == 20
        assert [a.n for a in answer.allocations] == [7, 7, 6]
        live_server.start()
        assert not (await client.allocate(run_id, 2, ["a", "b", "c", "d", "e"])).degraded


async def test_replay_after_crash_counts_once_when_the_send_had_arrived(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    async with AsyncKnapsackClient(live_server.url, retry=NO_WAIT) as plain:
        await plain.ensure_run(run_id)
        journal_as_if_crashed(journal, run_id, 0)
        await plain.report(run_id, 0, RESULTS)  # the crashed trainer's send did arrive
    async with AsyncKnapsackClient(
        live_server.url, retry=NO_WAIT, journal_path=journal
    ) as restarted:
        assert await restarted.replay_journal() == 1
        assert await counts(restarted, run_id) == EXPECTED_ONCE
    assert Journal(journal).pending() == []


async def test_replay_after_crash_counts_once_when_the_send_was_lost(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    async with AsyncKnapsackClient(
        live_server.url, retry=NO_WAIT, journal_path=journal
    ) as restarted:
        await restarted.ensure_run(run_id)  # first answer: the journal is resent here...
        journal_as_if_crashed(journal, run_id, 0)
        await restarted.ensure_run(run_id)  # ...only once per client, so nothing happens
        assert len(Journal(journal).pending()) == 1
        assert await restarted.replay_journal() == 1
        assert await restarted.replay_journal() == 0
        assert await counts(restarted, run_id) == EXPECTED_ONCE


async def test_new_client_replays_on_its_first_answer(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    async with AsyncKnapsackClient(live_server.url, retry=NO_WAIT) as setup:
        await setup.ensure_run(run_id)
    journal_as_if_crashed(journal, run_id, 0)
    async with AsyncKnapsackClient(
        live_server.url, retry=NO_WAIT, journal_path=journal
    ) as restarted:
        await restarted.ensure_run(run_id)
        assert await counts(restarted, run_id) == EXPECTED_ONCE
    assert Journal(journal).pending() == []
