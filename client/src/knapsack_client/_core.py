"""The sans-I/O core of both clients: retries, fallback, journal delivery and replay.

Each operation is a generator that yields effects and receives their results:
`Send` (one HTTP request; the answer, or the mapped transport error, comes
back), `Pause` (a backoff wait) and `Disk` (a journal operation). It never does
I/O itself, so the sync and async clients (`_client.py`) differ only in how they
perform an effect, and every rule below is written once, as sans-I/O protocol
libraries such as h11 keep their state machine apart from sockets.

Three promises a trainer relies on:

- **allocate() never stops training because the service is down.** After a
  short retry budget (`allocate_retry`) it returns the uniform allocation the
  service would give in an outage (`rules.uniform_fallback`), honouring the
  settings given to `ensure_run`, marked `degraded=True`, warning once per
  outage. A wrong request still raises. It never touches the journal, so its
  time does not depend on what the journal holds.
- **report() counts once.** Its report_id is derived from (run, step, worker,
  attempt), so a retry, a replay or a restarted trainer resending the same step
  is recognised by the service as a duplicate.
- **report() loses nothing it can deliver.** With a journal, the report is
  fsynced before it is sent and marked acknowledged after. What an outage left
  pending is resent, one try each, after the next successful call other than
  allocate() (the service is then known to be up), or by `replay_journal()` /
  `knapsack-client replay`. A report the service refuses for good (a 4xx other
  than 408/429) is dropped with a logged error instead of being resent forever.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx

from knapsack_client import _calls
from knapsack_client._exceptions import (
    KnapsackError,
    RunNotFound,
    ServiceUnavailable,
    is_final_refusal,
)
from knapsack_client._fallback import build_fallback_allocation
from knapsack_client._journal import Journal, JournalEntry
from knapsack_client._models import (
    AllocationRequest,
    AllocationResponse,
    OutcomeAck,
    RunInfo,
    RunSettings,
)
from knapsack_client._retry import RetryPolicy

logger = logging.getLogger("knapsack_client")

#: Seconds for each of connect, read, write and pool; the service answers in milliseconds.
DEFAULT_TIMEOUT = httpx.Timeout(5.0)
#: allocate()'s retry budget, capped from the client's policy: a trainer waiting
#: for its budget would rather get the uniform fallback within a second.
ALLOCATE_MAX_ATTEMPTS = 2
ALLOCATE_MAX_DELAY = 0.5
ALLOCATE_MAX_RETRY_AFTER = 1.0

T = TypeVar("T")
ReplayCallback = Callable[[JournalEntry, "OutcomeAck | KnapsackError"], None]


@dataclass(frozen=True)
class Send:
    """Send one request; the driver answers with the httpx.Response or a KnapsackError."""

    call: _calls.Call


@dataclass(frozen=True)
class Pause:
    """Wait before a retry, with the policy's (injectable) sleep."""

    seconds: float
    policy: RetryPolicy


@dataclass(frozen=True)
class Disk:
    """Run a journal operation (the async driver runs it in a worker thread)."""

    operation: Callable[[], Any]


Effect = Send | Pause | Disk
Operation = Generator[Effect, Any, T]


class ClientCore:
    """Configuration, state and every operation of a client, free of I/O."""

    def __init__(
        self,
        base_url: str | None,
        token: str | None,
        *,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy,
        allocate_retry: RetryPolicy | None,
        journal_path: str | os.PathLike[str] | None,
        transport_base_url: str,
    ) -> None:
        env_url, env_token = _calls.read_environment()
        # An in-process http_client (TestClient, ASGITransport) carries its own
        # base URL, which must win over an environment meant for the real service.
        chosen = base_url or transport_base_url or env_url or _calls.DEFAULT_BASE_URL
        self.base_url = chosen.rstrip("/")
        self.token = token if token is not None else env_token
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry
        self.allocate_retry = allocate_retry or retry.with_(
            max_attempts=min(retry.max_attempts, ALLOCATE_MAX_ATTEMPTS),
            max_delay=min(retry.max_delay, ALLOCATE_MAX_DELAY),
            max_retry_after=min(retry.max_retry_after, ALLOCATE_MAX_RETRY_AFTER),
        )
        #: A catch-up replay follows a call that just succeeded: one try per report,
        #: so a service that fails again costs one request, not a backoff sequence.
        self.catch_up_retry = retry.with_(max_attempts=1)
        self.journal = Journal(journal_path) if journal_path is not None else None
        self._run_settings: dict[str, RunSettings] = {}
        self._replay_due = self.journal is not None
        self._replaying = False
        self._fallback_warned = False

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: _calls.Call) -> httpx.Request:
        return http.build_request(
            call.method,
            self.base_url + call.path,
            json=call.body,
            headers=_calls.headers(self.token),
            timeout=self.timeout,
        )

    # ------------------------------------------------------------------ one request

    def _do_request(self, call: _calls.Call, policy: RetryPolicy | None = None) -> Operation[Any]:
        """Send `call` until it succeeds or the policy gives up (raising the last error)."""
        policy = policy or self.retry
        retries = 0
        while True:
            outcome = yield Send(call)
            if isinstance(outcome, KnapsackError):
                error = outcome
            else:
                try:
                    return _calls.parse(call, outcome)
                except KnapsackError as exc:
                    error = exc
            delay = policy.delay_before_retry(retries, error)
            if delay is None:
                raise error
            logger.debug("%s %s: %s; retrying in %.2fs", call.method, call.path, error, delay)
            yield Pause(delay, policy)
            retries += 1

    def _do_read(self, call: _calls.Call) -> Operation[Any]:
        """A call whose success shows the service is up: catch up on the journal after."""
        answer = yield from self._do_request(call)
        yield from self._do_catch_up()
        return answer

    # ------------------------------------------------------------------ runs

    def _do_ensure_run(
        self, run_id: str, settings: RunSettings | Mapping[str, Any] | None
    ) -> Operation[RunInfo]:
        if settings is None:
            try:
                info = yield from self._do_request(_calls.get_run(run_id))
            except RunNotFound:
                info = yield from self._do_request(_calls.put_run(run_id, RunSettings()))
        else:
            wanted = _calls.validate(RunSettings, settings)
            # Cached before sending: the offline fallback honours them (max_n,
            # budget, ...) even when the service is never reached.
            self._run_settings[run_id] = wanted
            info = yield from self._do_request(_calls.put_run(run_id, wanted))
        return (yield from self._remembering(run_id, info))

    def _do_get_run(self, run_id: str) -> Operation[RunInfo]:
        info = yield from self._do_request(_calls.get_run(run_id))
        return (yield from self._remembering(run_id, info))

    def _remembering(self, run_id: str, info: RunInfo) -> Operation[RunInfo]:
        self._run_settings[run_id] = info.settings
        yield from self._do_catch_up()
        return info

    def _do_delete_run(self, run_id: str) -> Operation[None]:
        yield from self._do_request(_calls.delete_run(run_id))
        self._run_settings.pop(run_id, None)

    # ------------------------------------------------------------------ allocations

    def _do_allocate(
        self, run_id: str, request: AllocationRequest
    ) -> Operation[AllocationResponse]:
        try:
            answer = yield from self._do_request(
                _calls.allocate(run_id, request), self.allocate_retry
            )
        except ServiceUnavailable as exc:
            return self._fallback(run_id, request, exc)
        if self._fallback_warned:
            logger.warning("the service answers again: allocations are no longer degraded")
            self._fallback_warned = False
        # No catch-up here: a journal replay must not lengthen the trainer's wait
        # for its budget (a degraded 200 during a store outage looks like "up").
        return answer

    def _fallback(
        self, run_id: str, request: AllocationRequest, error: ServiceUnavailable
    ) -> AllocationResponse:
        reason = f"service unreachable: {error.message}"
        if not self._fallback_warned:
            self._fallback_warned = True
            logger.warning(
                "allocate(%s, step %d): %s; using uniform allocations until it answers again",
                run_id,
                request.step,
                reason,
            )
        else:
            logger.debug("allocate(%s, step %d): %s", run_id, request.step, reason)
        return build_fallback_allocation(
            request.step,
            request.prompts,
            budget=request.budget,
            min_n=request.min_n,
            max_n=request.max_n,
            settings=self._run_settings.get(run_id),
            workers=request.workers,
            split_groups=request.split_groups,
            reason=reason,
        )

    # ------------------------------------------------------------------ reports

    def _do_report(self, entry: JournalEntry) -> Operation[OutcomeAck]:
        if self.journal is not None:
            yield Disk(partial(self.journal.record_report, entry))
        ack = yield from self._do_deliver(entry, self.retry)
        yield from self._do_catch_up()
        return ack

    def _do_deliver(self, entry: JournalEntry, policy: RetryPolicy) -> Operation[OutcomeAck]:
        """Send one report and record its fate in the journal (acknowledged or dropped)."""
        try:
            ack: OutcomeAck = yield from self._do_request(_calls.report(entry), policy)
        except KnapsackError as exc:
            if self.journal is not None:
                if is_final_refusal(exc):
                    logger.error(
                        "report %s (run %s, step %s) refused by the service and dropped "
                        "from the journal: %s",
                        entry.report_id,
                        entry.run_id,
                        entry.step,
                        exc,
                    )
                    yield Disk(partial(self.journal.record_drop, entry, str(exc)))
                elif self.retry.is_retryable(exc):
                    self._replay_due = True  # resend once the service answers again
            raise
        if self.journal is not None:
            yield Disk(partial(self.journal.record_ack, entry, duplicate=ack.duplicate))
        return ack

    def _do_catch_up(self) -> Operation[None]:
        """Resend what the journal holds, one try each, if an outage left some."""
        if self._replay_due and not self._replaying and self.journal is not None:
            yield from self._do_replay(catch_up=True)

    def _do_replay(
        self, *, catch_up: bool, on_entry: ReplayCallback | None = None
    ) -> Operation[int]:
        """Resend every pending report; returns how many were acknowledged.

        Stops at the first report the service cannot take now (raising it unless
        this is a catch-up, which logs and waits for the next success instead).
        Refused reports are dropped by `_do_deliver`; any other failure (a
        service bug, a misrouted URL) keeps the report and goes on with the next.
        """
        if self.journal is None:
            return 0
        policy = self.catch_up_retry if catch_up else self.retry
        self._replaying, self._replay_due = True, False
        acknowledged = 0
        try:
            for entry in (yield Disk(self.journal.pending)):
                try:
                    ack = yield from self._do_deliver(entry, policy)
                except KnapsackError as exc:
                    if on_entry is not None:
                        on_entry(entry, exc)
                    if self.retry.is_retryable(exc):
                        self._replay_due = True
                        if not catch_up:
                            raise
                        logger.warning("journal replay paused, service unreachable: %s", exc)
                        break
                    if not is_final_refusal(exc):
                        logger.error(
                            "report %s (run %s, step %s) not delivered, kept in the journal: %s",
                            entry.report_id,
                            entry.run_id,
                            entry.step,
                            exc,
                        )
                    continue
                acknowledged += 1
                if on_entry is not None:
                    on_entry(entry, ack)
            yield Disk(self.journal.compact)
        finally:
            self._replaying = False
        if acknowledged:
            logger.info("journal replay: %d report(s) acknowledged", acknowledged)
        return acknowledged
