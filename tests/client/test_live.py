"""KnapsackClient over real HTTP to uvicorn: outages, restarts, fallback and journal replay."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from knapsack_client import (
    Journal,
    JournalEntry,
    KnapsackClient,
    RetryPolicy,
    ServiceUnavailable,
    derive_report_id,
)
from knapsack_client.cli import main as cli_main
from tests.client.conftest import NO_WAIT, LiveServer

RESULTS = [
    {"prompt_id": "gsm8k-1", "successes": 3, "trials": 8},
    {"prompt_id": "aime-3", "successes": 0, "trials": 8},
]
#: Enough patience to outlast a restart of the server (each wait at most 0.2 s).
PATIENT = RetryPolicy(max_attempts=100, base_delay=0.02, max_delay=0.2)


def counts(client: KnapsackClient, run_id: str) -> dict[str, tuple[int, int]]:
    answer = client.lookup(run_id, [r["prompt_id"] for r in RESULTS])
    return {p.prompt_id: (p.successes, p.trials) for p in answer.prompts}


EXPECTED_ONCE = {"gsm8k-1": (3, 8), "aime-3": (0, 8)}


def test_report_during_outage_is_counted_once_after_restart(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    with KnapsackClient(live_server.url, retry=NO_WAIT, journal_path=journal) as client:
        client.ensure_run(run_id)
        live_server.stop()
        with pytest.raises(ServiceUnavailable):
            client.report(run_id, 0, RESULTS)
        assert len(Journal(journal).pending()) == 1
        live_server.start()
        client.get_run(run_id)  # the first answer after the outage resends the journal
        assert Journal(journal).pending() == []
        assert counts(client, run_id) == EXPECTED_ONCE
        # The trainer retrying the step by hand is recognised as the same report.
        assert client.report(run_id, 0, RESULTS).duplicate
        assert counts(client, run_id) == EXPECTED_ONCE


def test_retries_ride_out_a_restart(live_server: LiveServer, run_id: str) -> None:
    with KnapsackClient(live_server.url, retry=PATIENT) as client:
        client.ensure_run(run_id)
        live_server.stop()
        restart = threading.Timer(0.3, live_server.start)
        restart.start()
        try:
            ack = client.report(run_id, 0, RESULTS)
        finally:
            restart.join()
        assert ack.accepted == 2 and not ack.duplicate
        assert counts(client, run_id) == EXPECTED_ONCE


def test_allocate_falls_back_when_nothing_listens(
    dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prompts = ["a", "b", "c", "d", "e"]
    with (
        KnapsackClient(dead_url, retry=NO_WAIT) as client,
        caplog.at_level(logging.WARNING, logger="knapsack_client"),
    ):
        first = client.allocate("run", 0, prompts, budget=23, workers=3)
        second = client.allocate("run", 1, prompts)
    assert first.degraded and first.strategy == "uniform"
    assert first.reason is not None and first.reason.startswith("service unreachable:")
    assert [a.n for a in first.allocations] == [5, 5, 5, 4, 4]
    assert first.shards is not None
    loads = sorted(sum(count for _, count in shard) for shard in first.shards)
    assert loads == [7, 8, 8]
    assert second.budget == len(prompts) * 8  # no budget, no cached settings: 8 each
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_fallback_uses_the_settings_cached_by_ensure_run(
    live_server: LiveServer, run_id: str
) -> None:
    with KnapsackClient(live_server.url, retry=NO_WAIT) as client:
        client.ensure_run(run_id, {"budget": 20, "default_n": 4})
        assert not client.allocate(run_id, 0, ["a", "b", "c", "d", "e"]).degraded
        live_server.stop()
        answer = client.allocate(run_id, 1, ["a", "b", "c"])
        assert answer.degraded and answer.budget == 20
        assert [a.n for a in answer.allocations] == [7, 7, 6]
        live_server.start()
        assert not client.allocate(run_id, 2, ["a", "b", "c", "d", "e"]).degraded


def test_fallback_honours_ensure_run_settings_when_never_reached(dead_url: str) -> None:
    """Regression: the settings given to ensure_run bind the fallback from step 0 on."""
    with KnapsackClient(dead_url, retry=NO_WAIT) as client:
        with pytest.raises(ServiceUnavailable):
            client.ensure_run("run", {"max_n": 16})
        answer = client.allocate("run", 0, ["a", "b", "c"], budget=300)
    assert answer.degraded
    assert [a.n for a in answer.allocations] == [16, 16, 16]  # was [100, 100, 100]
    assert answer.budget == 48


def journal_as_if_crashed(journal: Path, run_id: str, step: int) -> JournalEntry:
    """What a trainer killed after writing its report, before the acknowledgement, leaves."""
    report_id = derive_report_id(run_id, step)
    body = {"report_id": report_id, "step": step, "results": RESULTS, "worker": "0"}
    entry = JournalEntry(report_id, run_id, body)
    Journal(journal).record_report(entry)
    return entry


def test_replay_after_crash_counts_once_when_the_send_had_arrived(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    with KnapsackClient(live_server.url, retry=NO_WAIT) as plain:
        plain.ensure_run(run_id)
        journal_as_if_crashed(journal, run_id, 0)
        plain.report(run_id, 0, RESULTS)  # the crashed trainer's send did arrive
    with KnapsackClient(live_server.url, retry=NO_WAIT, journal_path=journal) as restarted:
        assert restarted.replay_journal() == 1
        assert counts(restarted, run_id) == EXPECTED_ONCE
    assert Journal(journal).pending() == []


def test_replay_after_crash_counts_once_when_the_send_was_lost(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    with KnapsackClient(live_server.url, retry=NO_WAIT, journal_path=journal) as restarted:
        restarted.ensure_run(run_id)  # first answer: the journal is resent here...
        journal_as_if_crashed(journal, run_id, 0)
        restarted.ensure_run(run_id)  # ...only once per client, so nothing happens
        assert len(Journal(journal).pending()) == 1
        assert restarted.replay_journal() == 1
        assert restarted.replay_journal() == 0
        assert counts(restarted, run_id) == EXPECTED_ONCE


def test_new_client_replays_on_its_first_answer(
    live_server: LiveServer, run_id: str, tmp_path: Path
) -> None:
    journal = tmp_path / "reports.jsonl"
    with KnapsackClient(live_server.url, retry=NO_WAIT) as setup:
        setup.ensure_run(run_id)
    journal_as_if_crashed(journal, run_id, 0)
    with KnapsackClient(live_server.url, retry=NO_WAIT, journal_path=journal) as restarted:
        restarted.ensure_run(run_id)
        assert counts(restarted, run_id) == EXPECTED_ONCE
    assert Journal(journal).pending() == []


def test_cli_replays_a_journal(
    live_server: LiveServer, run_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "reports.jsonl"
    with KnapsackClient(live_server.url, retry=NO_WAIT) as client:
        client.ensure_run(run_id)
        entry = journal_as_if_crashed(journal, run_id, 4)
        assert cli_main(["replay", "--journal", str(journal), "--url", live_server.url]) == 0
        out = capsys.readouterr().out
        assert entry.report_id in out and "applied" in out
        assert counts(client, run_id) == EXPECTED_ONCE
        assert cli_main(["replay", "--journal", str(journal), "--url", live_server.url]) == 0
        assert "0 unacknowledged" in capsys.readouterr().out


def test_cli_fails_when_the_service_is_unreachable(
    dead_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "reports.jsonl"
    journal_as_if_crashed(journal, "run", 0)
    assert (
        cli_main(["replay", "--journal", str(journal), "--url", dead_url, "--attempts", "1"]) == 1
    )
    assert len(Journal(journal).pending()) == 1
    assert "still pending 1" in capsys.readouterr().out
