"""`knapsack-client`: operations a trainer's operator runs by hand.

`knapsack-client replay --journal PATH` resends the reports a crashed or cut-off
trainer left unacknowledged in its journal (each counts once: same report_id).
Exit status: 0 when the journal is empty afterwards, 1 when reports remain
(service unreachable, run missing, token refused), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from knapsack_client._client import KnapsackClient
from knapsack_client._exceptions import KnapsackError
from knapsack_client._journal import Journal, JournalEntry
from knapsack_client._models import OutcomeAck
from knapsack_client._retry import RetryPolicy


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(prog="knapsack-client", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser("replay", help="resend the unacknowledged reports of a journal")
    replay.add_argument("--journal", required=True, help="journal file written by the trainer")
    replay.add_argument("--url", default=None, help="service URL (default: $KRL_URL)")
    replay.add_argument("--token", default=None, help="bearer token (default: $KRL_TOKEN)")
    replay.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    replay.add_argument(
        "--attempts", type=int, default=5, help="tries per report before giving up (default 5)"
    )
    return parser


def replay(
    journal_path: str, url: str | None, token: str | None, timeout: float, attempts: int = 5
) -> int:
    """Replay one journal, printing each report's fate; returns the exit status."""
    journal = Journal(journal_path)
    pending = journal.pending()
    print(f"{journal_path}: {len(pending)} unacknowledged report(s)")
    if not pending:
        return 0

    def show(entry: JournalEntry, outcome: OutcomeAck | KnapsackError) -> None:
        where = f"run {entry.run_id} step {entry.step} report {entry.report_id}"
        if isinstance(outcome, OutcomeAck):
            state = "duplicate (already counted)" if outcome.duplicate else "applied"
            print(f"  {where}: {state}, {outcome.accepted} result(s)")
        else:
            print(f"  {where}: FAILED {type(outcome).__name__}: {outcome}")

    retry = RetryPolicy(max_attempts=max(1, attempts))
    with KnapsackClient(
        url, token, timeout=timeout, retry=retry, journal_path=journal_path
    ) as client:
        try:
            acknowledged = client.replay_journal(on_entry=show)
        except KnapsackError as exc:
            print(f"replay stopped: {exc}", file=sys.stderr)
            acknowledged = -1
    remaining = len(journal.pending())
    if acknowledged >= 0:
        print(f"acknowledged {acknowledged}, still pending {remaining}")
    else:
        print(f"still pending {remaining}")
    return 0 if remaining == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `knapsack-client` script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    arguments = build_parser().parse_args(argv)
    if arguments.command == "replay":
        return replay(
            arguments.journal,
            arguments.url,
            arguments.token,
            arguments.timeout,
            arguments.attempts,
        )
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":
    sys.exit(main())
