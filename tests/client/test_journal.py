"""The journal file on its own: pending entries, torn lines, compaction, two processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from knapsack_client import Journal, JournalEntry
from knapsack_client._journal import COMPACT_BYTES


def entry(number: int, run_id: str = "run") -> JournalEntry:
    body = {"report_id": f"r{number}", "step": number, "results": []}
    return JournalEntry(f"r{number}", run_id, body)


def test_report_without_ack_is_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.record_report(entry(1))
    journal.record_report(entry(2))
    journal.record_report(entry(3))
    journal.record_ack(entry(1), duplicate=False)
    journal.record_drop(entry(3), "invalid")
    assert journal.pending() == [entry(2)]


def test_same_report_id_in_two_runs_is_two_entries(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.record_report(entry(1, "a"))
    journal.record_report(entry(1, "b"))
    journal.record_ack(entry(1, "a"), duplicate=False)
    assert journal.pending() == [entry(1, "b")]


def test_missing_file_has_nothing_pending(tmp_path: Path) -> None:
    assert Journal(tmp_path / "absent.jsonl").pending() == []


def test_torn_last_line_is_skipped_and_not_glued_to_the_next(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.record_report(entry(1))
    with open(path, "ab") as handle:  # a crash in the middle of writing a line
        handle.write(b'{"kind": "report", "report_id": "r2", "ru')
    journal.record_report(entry(3))
    assert journal.pending() == [entry(1), entry(3)]


def test_compact_keeps_only_pending_reports(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    for number in range(10):
        journal.record_report(entry(number))
    for number in range(0, 10, 2):
        journal.record_ack(entry(number), duplicate=False)
    assert journal.compact() == 5
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["report_id"] for line in lines] == ["r1", "r3", "r5", "r7", "r9"]
    assert all(line["kind"] == "report" for line in lines)
    assert journal.pending() == [entry(n) for n in range(1, 10, 2)]


def test_large_journal_is_compacted_on_ack(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    big = JournalEntry("big", "run", {"padding": "x" * (COMPACT_BYTES + 1)})
    journal.record_report(big)
    journal.record_report(entry(1))
    journal.record_ack(big, duplicate=False)
    assert path.stat().st_size < COMPACT_BYTES
    assert journal.pending() == [entry(1)]


WRITER = """
import sys
from knapsack_client import Journal, JournalEntry
journal = Journal(sys.argv[1])
for number in range(int(sys.argv[3])):
    report_id = f"{sys.argv[2]}-{number}"
    body = {"report_id": report_id, "pad": "x" * 512}
    journal.record_report(JournalEntry(report_id, "run", body))
    if number % 2:
        journal.record_ack(JournalEntry(report_id, "run", {}), duplicate=False)
"""


def test_two_processes_share_one_journal_without_corrupting_it(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    count = 40
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count)])
        for name in ("a", "b")
    ]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2 * (count + count // 2)
    for line in lines:
        json.loads(line)  # every line whole
    pending = {e.report_id for e in Journal(path).pending()}
    assert pending == {f"{name}-{n}" for name in ("a", "b") for n in range(0, count, 2)}
