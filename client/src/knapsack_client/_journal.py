"""Write-ahead journal of outcome reports.

It makes sure a trainer killed between its rollouts and the service's
acknowledgement loses nothing.

The file holds one JSON object a line:

```
{"kind": "report", "report_id": "krl-…", "run_id": "run7", "body": {...}}   before sending
{"kind": "ack", "report_id": "krl-…", "run_id": "run7", "duplicate": false} after the answer
{"kind": "drop", "report_id": "krl-…", "run_id": "run7", "reason": "..."}   can never succeed
```

A report line is fsynced before the report is sent; a report without a later
ack or drop line is pending and is sent again, with the same report_id, so the
service counts it once even when the first send did arrive. The file is
rewritten with only the pending reports when it grows past `COMPACT_BYTES` and
after each replay.

Every operation opens the file anew under an exclusive `flock` on a sibling
`<path>.lock`: the lock file, never replaced, serialises processes that share a
journal, and compaction may swap the journal itself with `os.replace`. A line
torn by a crash mid-write is skipped on reading; it held a report that was never
sent, whose trainer died before learning it was sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # POSIX only; elsewhere a journal is safe for one process at a time.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("knapsack_client.journal")

#: The journal is compacted when an acknowledgement finds it larger than this.
COMPACT_BYTES = 1 << 20


@dataclass(frozen=True)
class JournalEntry:
    """A report written to the journal and not yet acknowledged."""

    report_id: str
    run_id: str
    body: dict[str, Any]

    @property
    def step(self) -> int | None:
        """The report's training step, for display."""
        step = self.body.get("step")
        return step if isinstance(step, int) else None


class Journal:
    """An append-only, fsynced, process-safe log of reports and their acknowledgements."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def record_report(self, entry: JournalEntry) -> None:
        """Append a report line and fsync it (call before sending)."""
        self._append(
            {
                "kind": "report",
                "report_id": entry.report_id,
                "run_id": entry.run_id,
                "body": entry.body,
            }
        )

    def record_ack(self, entry: JournalEntry, *, duplicate: bool) -> None:
        """Append an acknowledgement line (the service counted the report)."""
        self._append(
            {
                "kind": "ack",
                "report_id": entry.report_id,
                "run_id": entry.run_id,
                "duplicate": duplicate,
            }
        )
        self._compact_if_large()

    def record_drop(self, entry: JournalEntry, reason: str) -> None:
        """Append a drop line: the report can never succeed, so it is not resent."""
        self._append(
            {"kind": "drop", "report_id": entry.report_id, "run_id": entry.run_id, "reason": reason}
        )

    def pending(self) -> list[JournalEntry]:
        """Reports written and neither acknowledged nor dropped, oldest first."""
        with self._locked():
            return self._read_pending()

    def compact(self) -> int:
        """Rewrite the file with only the pending reports; returns how many remain."""
        with self._locked():
            return self._rewrite(self._read_pending())

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._locked(), open(self.path, "a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                # A crash mid-write leaves a line without its newline: end it so
                # the new record is not glued to the torn one.
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def _read_pending(self) -> list[JournalEntry]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        pending: dict[tuple[str, str], JournalEntry] = {}
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (str(record["run_id"]), str(record["report_id"]))
                kind = record["kind"]
            except (ValueError, KeyError, TypeError):
                logger.warning("journal %s: skipping unreadable line %d", self.path, number)
                continue
            if kind == "report" and isinstance(record.get("body"), dict):
                pending.pop(key, None)  # a re-sent report moves to the end
                pending[key] = JournalEntry(key[1], key[0], record["body"])
            elif kind in ("ack", "drop"):
                pending.pop(key, None)
        return list(pending.values())

    def _rewrite(self, entries: list[JournalEntry]) -> int:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as handle:
            for entry in entries:
                record = {
                    "kind": "report",
                    "report_id": entry.report_id,
                    "run_id": entry.run_id,
                    "body": entry.body,
                }
                handle.write((json.dumps(record, separators=(",", ":")) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)
        return len(entries)

    def _compact_if_large(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size > COMPACT_BYTES:
            self.compact()


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX needs the directory fsynced too)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
