"""Sync and async clients of the knapsack-rl service.

`_BaseClient` holds everything free of I/O: configuration, URLs, headers, the
requests each call sends, and reading the answers. `KnapsackClient` and
`AsyncKnapsackClient` add only the sending, and mirror each other method for
method (`close`/`aclose`, `__enter__`/`__aenter__`), as httpx's own clients do
(encode/httpx: `httpx/_client.py`).

Three promises a trainer relies on:

- **allocate() never stops training because the service is down.** After a
  short retry budget (`allocate_retry`) it returns a uniform allocation marked
  `degraded=True`, warning once per outage. A wrong request still raises.
- **report() counts once.** Its report_id is derived from (run, step, worker,
  attempt), so a retry, a replay or a restarted trainer resending the same step
  is recognised by the service as a duplicate.
- **report() loses nothing when given a journal.** The report is fsynced to the
  journal before it is sent and marked acknowledged after; whatever a crash or
  outage left unacknowledged is resent after the client's first successful call
  (the service is then known to be up) or by `replay_journal()` /
  `knapsack-client replay`. Construction does no I/O, so building a client never
  blocks on an unreachable service.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import httpx
import pydantic

from knapsack_client._exceptions import (
    InvalidRequest,
    KnapsackError,
    RunNotFound,
    ServiceUnavailable,
    error_from_response,
    map_transport_error,
    map_validation_error,
)
from knapsack_client._fallback import build_fallback_allocation
from knapsack_client._journal import Journal, JournalEntry
from knapsack_client._models import (
    AllocationRequest,
    AllocationResponse,
    LookupRequest,
    LookupResponse,
    OutcomeAck,
    OutcomeReport,
    PromptResult,
    RunInfo,
    RunSettings,
    RunSummary,
    SolveRequest,
    SolveResponse,
)
from knapsack_client._retry import DEFAULT_RETRY, RetryPolicy

logger = logging.getLogger("knapsack_client")

ENV_URL = "KRL_URL"
ENV_TOKEN = "KRL_TOKEN"
#: Where the service listens by default (`knapsack-service serve`).
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: Seconds for each of connect, read, write and pool; the service answers in milliseconds.
DEFAULT_TIMEOUT = httpx.Timeout(5.0)
#: Connections kept open for reuse; a trainer talks to one service.
DEFAULT_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=8)
#: allocate()'s retry budget, capped from the client's policy: a trainer waiting
#: for its budget would rather get the uniform fallback within a second.
ALLOCATE_MAX_ATTEMPTS = 2
ALLOCATE_MAX_DELAY = 0.5
ALLOCATE_MAX_RETRY_AFTER = 1.0
#: Prefix and length (hex characters) of derived report ids.
REPORT_ID_PREFIX = "krl-"
REPORT_ID_HEX_LENGTH = 32
USER_AGENT = "knapsack-client/0.1.0"

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
ReplayCallback = Callable[[JournalEntry, "OutcomeAck | KnapsackError"], None]


def read_environment() -> tuple[str | None, str | None]:
    """The service URL and token from `KRL_URL` / `KRL_TOKEN` (the only read of os.environ)."""
    return os.environ.get(ENV_URL) or None, os.environ.get(ENV_TOKEN) or None


def derive_report_id(run_id: str, step: int, worker: str | int = "0", attempt: int = 0) -> str:
    """A report id that is the same every time the same step is reported.

    The service counts a report_id once, so deriving it from what identifies the
    report (rather than drawing it at random) makes every resend — a retry after
    a timeout, a journal replay, a trainer restarted from a checkpoint — a
    recognised duplicate. Bump `attempt` to report the same step again on purpose
    (e.g. a re-rollout after a checkpoint rewind whose outcomes should count).
    """
    key = json.dumps([run_id, int(step), str(worker), int(attempt)], separators=(",", ":"))
    digest = hashlib.sha256(key.encode()).hexdigest()
    return REPORT_ID_PREFIX + digest[:REPORT_ID_HEX_LENGTH]


def quote_segment(value: str) -> str:
    """Percent-escape one path segment, so `a/b` or `..` stays one run id."""
    quoted = urllib.parse.quote(value, safe="")
    if quoted in (".", ".."):  # dot segments would be removed by URL normalisation
        quoted = quoted.replace(".", "%2E")
    return quoted


@dataclass(frozen=True)
class _Call:
    """One request the client sends and the model its answer is read into."""

    method: str
    path: str
    body: dict[str, Any] | None
    model: type[pydantic.BaseModel] | None


def _validate(model: type[ModelT], data: Any) -> ModelT:
    """Validate a request locally: what the service would refuse is never sent (nor journaled)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise map_validation_error(exc) from None


def _dump(model: pydantic.BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


class _BaseClient:
    """Configuration, request building and answer parsing shared by both clients."""

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
        env_url, env_token = read_environment()
        # An in-process http_client (TestClient, ASGITransport) carries its own
        # base URL, which must win over an environment meant for the real service.
        chosen = base_url or transport_base_url or env_url or DEFAULT_BASE_URL
        self.base_url = chosen.rstrip("/")
        self.token = token if token is not None else env_token
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry
        self.allocate_retry = allocate_retry or retry.with_(
            max_attempts=min(retry.max_attempts, ALLOCATE_MAX_ATTEMPTS),
            max_delay=min(retry.max_delay, ALLOCATE_MAX_DELAY),
            max_retry_after=min(retry.max_retry_after, ALLOCATE_MAX_RETRY_AFTER),
        )
        self.journal = Journal(journal_path) if journal_path is not None else None
        self._run_settings: dict[str, RunSettings] = {}
        self._replay_due = self.journal is not None
        self._replaying = False
        self._fallback_warned = False

    # ------------------------------------------------------------------ URLs, headers

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    @staticmethod
    def _run_path(run_id: str, *rest: str) -> str:
        _validate_identifier("run_id", run_id)
        return "/v1/runs/" + quote_segment(run_id) + "".join("/" + part for part in rest)

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: _Call) -> httpx.Request:
        return http.build_request(
            call.method,
            self._url(call.path),
            json=call.body,
            headers=self._headers(),
            timeout=self.timeout,
        )

    # ------------------------------------------------------------------ calls

    def _put_run_call(self, run_id: str, settings: RunSettings | Mapping[str, Any]) -> _Call:
        body = _dump(_validate(RunSettings, settings))
        return _Call("PUT", self._run_path(run_id), body, RunInfo)

    def _get_run_call(self, run_id: str) -> _Call:
        return _Call("GET", self._run_path(run_id), None, RunInfo)

    def _delete_run_call(self, run_id: str) -> _Call:
        return _Call("DELETE", self._run_path(run_id), None, None)

    def _allocate_call(
        self,
        run_id: str,
        step: int,
        prompts: Sequence[str],
        *,
        budget: int | None,
        workers: int,
        split_groups: bool,
        strategy: str | None,
        min_n: int | None,
        max_n: int | None,
    ) -> tuple[_Call, AllocationRequest]:
        request = _validate(
            AllocationRequest,
            {
                "step": step,
                "prompts": list(prompts),
                "budget": budget,
                "workers": workers,
                "split_groups": split_groups,
                "strategy": strategy,
                "min_n": min_n,
                "max_n": max_n,
            },
        )
        call = _Call(
            "POST", self._run_path(run_id, "allocations"), _dump(request), AllocationResponse
        )
        return call, request

    def _report_entry(
        self,
        run_id: str,
        step: int,
        results: Sequence[PromptResult | Mapping[str, Any]],
        *,
        report_id: str | None,
        worker: str | int,
        attempt: int,
    ) -> JournalEntry:
        _validate_identifier("run_id", run_id)
        if report_id is None:
            report_id = derive_report_id(run_id, step, worker, attempt)
        report = _validate(
            OutcomeReport,
            {
                "report_id": report_id,
                "step": step,
                "results": list(results),
                "worker": str(worker),
            },
        )
        return JournalEntry(report.report_id, run_id, _dump(report))

    def _report_call(self, entry: JournalEntry) -> _Call:
        return _Call("POST", self._run_path(entry.run_id, "outcomes"), entry.body, OutcomeAck)

    def _lookup_call(self, run_id: str, prompt_ids: Sequence[str]) -> _Call:
        body = _dump(_validate(LookupRequest, {"prompt_ids": list(prompt_ids)}))
        return _Call("POST", self._run_path(run_id, "prompts", "lookup"), body, LookupResponse)

    def _summary_call(self, run_id: str) -> _Call:
        return _Call("GET", self._run_path(run_id, "summary"), None, RunSummary)

    def _solve_call(self, request: SolveRequest | Mapping[str, Any]) -> _Call:
        body = _dump(_validate(SolveRequest, request))
        return _Call("POST", "/v1/solve", body, SolveResponse)

    # ------------------------------------------------------------------ answers

    @staticmethod
    def _parse(call: _Call, response: httpx.Response) -> Any:
        error = error_from_response(response)
        if error is not None:
            raise error
        if call.model is None:
            return None
        try:
            return call.model.model_validate(response.json())
        except (ValueError, pydantic.ValidationError) as exc:
            raise KnapsackError(
                f"unexpected answer to {call.method} {call.path}: {exc}",
                status=response.status_code,
            ) from None

    def _intend(self, run_id: str, settings: RunSettings | Mapping[str, Any]) -> RunSettings:
        """Cache the settings a trainer asks for before sending them.

        The offline fallback then honours them (max_n, budget, ...) even when the
        service was never reached; the service's answer replaces them once it comes.
        """
        validated = _validate(RunSettings, settings)
        self._run_settings[run_id] = validated
        return validated

    def _remember(self, run_id: str, info: RunInfo) -> RunInfo:
        self._run_settings[run_id] = info.settings
        return info

    def _fallback(
        self,
        run_id: str,
        request: AllocationRequest,
        error: ServiceUnavailable,
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

    def _allocated(self, answer: AllocationResponse) -> AllocationResponse:
        if self._fallback_warned:
            logger.warning("the service answers again: allocations are no longer degraded")
        self._fallback_warned = False
        return answer

    def _should_replay(self) -> bool:
        return self._replay_due and not self._replaying and self.journal is not None

    @staticmethod
    def _log_kept(entry: JournalEntry, error: KnapsackError) -> None:
        logger.error(
            "report %s (run %s, step %s) not delivered, kept in the journal: %s",
            entry.report_id,
            entry.run_id,
            entry.step,
            error,
        )

    @staticmethod
    def _log_dropped(entry: JournalEntry, error: KnapsackError) -> None:
        logger.error(
            "report %s (run %s, step %s) refused by the service and dropped from the journal: %s",
            entry.report_id,
            entry.run_id,
            entry.step,
            error,
        )


def _validate_identifier(name: str, value: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= 256:
        raise InvalidRequest(f"{name} must be a string of 1 to 256 characters", field=name)


# ====================================================================== sync


class KnapsackClient(_BaseClient):
    """Blocking client: one per trainer process, reused across steps (keeps connections).

    Args:
        base_url: Service URL; default `KRL_URL`, else the http_client's base URL,
            else `http://127.0.0.1:8000`.
        token: Bearer token; default `KRL_TOKEN`; "" sends none.
        timeout: Seconds, or an `httpx.Timeout`, for each request.
        retry: Retry policy of every call.
        allocate_retry: Retry policy of allocate(); default: `retry` capped to 2 tries
            and short waits, so an outage falls back to uniform quickly.
        journal_path: Append-only file that makes reports survive crashes and outages.
        http_client: An `httpx.Client` to send through (e.g. `TestClient(app)`); the
            caller keeps ownership and closes it.

    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        allocate_retry: RetryPolicy | None = None,
        journal_path: str | os.PathLike[str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token,
            timeout=timeout,
            retry=retry,
            allocate_retry=allocate_retry,
            journal_path=journal_path,
            transport_base_url=str(http_client.base_url) if http_client is not None else "",
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(limits=DEFAULT_LIMITS)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connections (only those of an http_client the client created)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> KnapsackClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ sending

    def _send(self, call: _Call, retry: RetryPolicy | None = None) -> Any:
        policy = retry or self.retry
        retries = 0
        while True:
            request = self._build(self._http, call)
            try:
                response = self._http.send(request)
            except httpx.HTTPError as exc:
                error = map_transport_error(exc, request.url.path)
            else:
                try:
                    return self._parse(call, response)
                except KnapsackError as exc:
                    error = exc
            delay = policy.delay_before_retry(retries, error)
            if delay is None:
                raise error
            logger.debug("%s %s: %s; retrying in %.2fs", call.method, call.path, error, delay)
            policy.sleep(delay)
            retries += 1

    def _maybe_replay(self) -> None:
        if self._should_replay():
            self._replay(raise_unavailable=False)

    # ------------------------------------------------------------------ runs

    def ensure_run(
        self, run_id: str, settings: RunSettings | Mapping[str, Any] | None = None
    ) -> RunInfo:
        """Create the run, or update its settings; call once at trainer start-up.

        With settings, PUTs them (idempotent). Without, keeps an existing run's
        settings and creates the run with defaults only if it does not exist.
        The settings are cached for allocate()'s offline fallback.
        """
        if settings is None:
            try:
                info = self._send(self._get_run_call(run_id))
            except RunNotFound:
                info = self._send(self._put_run_call(run_id, {}))
        else:
            info = self._send(self._put_run_call(run_id, self._intend(run_id, settings)))
        self._remember(run_id, info)
        self._maybe_replay()
        return info

    def get_run(self, run_id: str) -> RunInfo:
        """The run's settings and counters."""
        info = self._remember(run_id, self._send(self._get_run_call(run_id)))
        self._maybe_replay()
        return info

    def delete_run(self, run_id: str) -> None:
        """Remove every key of the run from the service."""
        self._send(self._delete_run_call(run_id))
        self._run_settings.pop(run_id, None)

    # ------------------------------------------------------------------ steps

    def allocate(
        self,
        run_id: str,
        step: int,
        prompts: Sequence[str],
        *,
        budget: int | None = None,
        workers: int = 1,
        split_groups: bool = True,
        strategy: str | None = None,
        min_n: int | None = None,
        max_n: int | None = None,
    ) -> AllocationResponse:
        """How many rollouts each prompt of this step gets.

        Never raises because the service is unreachable: after `allocate_retry`
        it returns a uniform allocation with `degraded=True` and the reason.
        Raises InvalidRequest, RunNotFound or Unauthorized for a wrong call.
        """
        call, request = self._allocate_call(
            run_id,
            step,
            prompts,
            budget=budget,
            workers=workers,
            split_groups=split_groups,
            strategy=strategy,
            min_n=min_n,
            max_n=max_n,
        )
        try:
            answer = self._send(call, self.allocate_retry)
        except ServiceUnavailable as exc:
            return self._fallback(run_id, request, exc)
        self._maybe_replay()
        return self._allocated(answer)

    def report(
        self,
        run_id: str,
        step: int,
        results: Sequence[PromptResult | Mapping[str, Any]],
        *,
        report_id: str | None = None,
        worker: str | int = "0",
        attempt: int = 0,
    ) -> OutcomeAck:
        """Send one step's outcomes; the service counts each report_id once.

        With a journal, the report is on disk before it is sent, and a
        ServiceUnavailable leaves it there to be resent (the error is still raised,
        so the caller knows it is late). An InvalidRequest drops it: it can never
        succeed.
        """
        entry = self._report_entry(
            run_id, step, results, report_id=report_id, worker=worker, attempt=attempt
        )
        if self.journal is not None:
            self.journal.record_report(entry)
        ack = self._deliver(entry)
        self._maybe_replay()
        return ack

    def _deliver(self, entry: JournalEntry) -> OutcomeAck:
        try:
            ack: OutcomeAck = self._send(self._report_call(entry))
        except InvalidRequest as exc:
            if self.journal is not None:
                self._log_dropped(entry, exc)
                self.journal.record_drop(entry, str(exc))
            raise
        except KnapsackError as exc:
            if self.journal is not None and self.retry.is_retryable(exc):
                self._replay_due = True  # resend once the service answers again
            raise
        if self.journal is not None:
            self.journal.record_ack(entry, duplicate=ack.duplicate)
        return ack

    def replay_journal(self, *, on_entry: ReplayCallback | None = None) -> int:
        """Resend every unacknowledged report of the journal; returns how many were acknowledged.

        Raises ServiceUnavailable (keeping the rest) when the service cannot be reached.
        A report refused as invalid is dropped; one refused otherwise (run not found,
        unauthorized, service bug) is kept and logged. `on_entry` sees each outcome.
        """
        return self._replay(raise_unavailable=True, on_entry=on_entry)

    def _replay(self, *, raise_unavailable: bool, on_entry: ReplayCallback | None = None) -> int:
        if self.journal is None:
            return 0
        self._replaying, self._replay_due = True, False
        acknowledged = 0
        try:
            for entry in self.journal.pending():
                try:
                    ack = self._deliver(entry)
                except KnapsackError as exc:
                    if on_entry is not None:
                        on_entry(entry, exc)
                    if self.retry.is_retryable(exc):
                        self._replay_due = True
                        if raise_unavailable:
                            raise
                        logger.warning("journal replay paused, service unreachable: %s", exc)
                        break
                    if not isinstance(exc, InvalidRequest):
                        self._log_kept(entry, exc)
                    continue
                acknowledged += 1
                if on_entry is not None:
                    on_entry(entry, ack)
            self.journal.compact()
        finally:
            self._replaying = False
        if acknowledged:
            logger.info("journal replay: %d report(s) acknowledged", acknowledged)
        return acknowledged

    # ------------------------------------------------------------------ reads

    def lookup(self, run_id: str, prompt_ids: Sequence[str]) -> LookupResponse:
        """Per-prompt raw counts and the run's current estimates."""
        answer: LookupResponse = self._send(self._lookup_call(run_id, prompt_ids))
        self._maybe_replay()
        return answer

    def summary(self, run_id: str) -> RunSummary:
        """Per-step rollouts, effective-gradient ratio and histograms of the run."""
        answer: RunSummary = self._send(self._summary_call(run_id))
        self._maybe_replay()
        return answer

    def solve(self, request: SolveRequest | Mapping[str, Any]) -> SolveResponse:
        """Stateless allocation for success rates the caller already knows."""
        answer: SolveResponse = self._send(self._solve_call(request))
        self._maybe_replay()
        return answer


# ====================================================================== async


class AsyncKnapsackClient(_BaseClient):
    """Async twin of KnapsackClient: the same methods, awaited (and `aclose`).

    Journal file operations run in a worker thread so an fsync or a lock held by
    another process never blocks the event loop. Arguments as KnapsackClient,
    with `http_client: httpx.AsyncClient` (e.g. on an `httpx.ASGITransport(app)`).
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        allocate_retry: RetryPolicy | None = None,
        journal_path: str | os.PathLike[str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token,
            timeout=timeout,
            retry=retry,
            allocate_retry=allocate_retry,
            journal_path=journal_path,
            transport_base_url=str(http_client.base_url) if http_client is not None else "",
        )
        self._owns_http = http_client is None
        self._http = (
            http_client if http_client is not None else httpx.AsyncClient(limits=DEFAULT_LIMITS)
        )

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the connections (only those of an http_client the client created)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncKnapsackClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ sending

    async def _send(self, call: _Call, retry: RetryPolicy | None = None) -> Any:
        policy = retry or self.retry
        retries = 0
        while True:
            request = self._build(self._http, call)
            try:
                response = await self._http.send(request)
            except httpx.HTTPError as exc:
                error = map_transport_error(exc, request.url.path)
            else:
                try:
                    return self._parse(call, response)
                except KnapsackError as exc:
                    error = exc
            delay = policy.delay_before_retry(retries, error)
            if delay is None:
                raise error
            logger.debug("%s %s: %s; retrying in %.2fs", call.method, call.path, error, delay)
            await policy.async_sleep(delay)
            retries += 1

    async def _maybe_replay(self) -> None:
        if self._should_replay():
            await self._replay(raise_unavailable=False)

    # ------------------------------------------------------------------ runs

    async def ensure_run(
        self, run_id: str, settings: RunSettings | Mapping[str, Any] | None = None
    ) -> RunInfo:
        """Create the run, or update its settings (see KnapsackClient.ensure_run)."""
        if settings is None:
            try:
                info = await self._send(self._get_run_call(run_id))
            except RunNotFound:
                info = await self._send(self._put_run_call(run_id, {}))
        else:
            info = await self._send(self._put_run_call(run_id, self._intend(run_id, settings)))
        self._remember(run_id, info)
        await self._maybe_replay()
        return info

    async def get_run(self, run_id: str) -> RunInfo:
        """The run's settings and counters."""
        info = self._remember(run_id, await self._send(self._get_run_call(run_id)))
        await self._maybe_replay()
        return info

    async def delete_run(self, run_id: str) -> None:
        """Remove every key of the run from the service."""
        await self._send(self._delete_run_call(run_id))
        self._run_settings.pop(run_id, None)

    # ------------------------------------------------------------------ steps

    async def allocate(
        self,
        run_id: str,
        step: int,
        prompts: Sequence[str],
        *,
        budget: int | None = None,
        workers: int = 1,
        split_groups: bool = True,
        strategy: str | None = None,
        min_n: int | None = None,
        max_n: int | None = None,
    ) -> AllocationResponse:
        """How many rollouts each prompt gets (see KnapsackClient.allocate)."""
        call, request = self._allocate_call(
            run_id,
            step,
            prompts,
            budget=budget,
            workers=workers,
            split_groups=split_groups,
            strategy=strategy,
            min_n=min_n,
            max_n=max_n,
        )
        try:
            answer = await self._send(call, self.allocate_retry)
        except ServiceUnavailable as exc:
            return self._fallback(run_id, request, exc)
        await self._maybe_replay()
        return self._allocated(answer)

    async def report(
        self,
        run_id: str,
        step: int,
        results: Sequence[PromptResult | Mapping[str, Any]],
        *,
        report_id: str | None = None,
        worker: str | int = "0",
        attempt: int = 0,
    ) -> OutcomeAck:
        """Send one step's outcomes (see KnapsackClient.report)."""
        entry = self._report_entry(
            run_id, step, results, report_id=report_id, worker=worker, attempt=attempt
        )
        if self.journal is not None:
            await asyncio.to_thread(self.journal.record_report, entry)
        ack = await self._deliver(entry)
        await self._maybe_replay()
        return ack

    async def _deliver(self, entry: JournalEntry) -> OutcomeAck:
        try:
            ack: OutcomeAck = await self._send(self._report_call(entry))
        except InvalidRequest as exc:
            if self.journal is not None:
                self._log_dropped(entry, exc)
                await asyncio.to_thread(self.journal.record_drop, entry, str(exc))
            raise
        except KnapsackError as exc:
            if self.journal is not None and self.retry.is_retryable(exc):
                self._replay_due = True
            raise
        if self.journal is not None:
            await asyncio.to_thread(self.journal.record_ack, entry, duplicate=ack.duplicate)
        return ack

    async def replay_journal(self, *, on_entry: ReplayCallback | None = None) -> int:
        """Resend every unacknowledged report (see KnapsackClient.replay_journal)."""
        return await self._replay(raise_unavailable=True, on_entry=on_entry)

    async def _replay(
        self, *, raise_unavailable: bool, on_entry: ReplayCallback | None = None
    ) -> int:
        if self.journal is None:
            return 0
        self._replaying, self._replay_due = True, False
        acknowledged = 0
        try:
            for entry in await asyncio.to_thread(self.journal.pending):
                try:
                    ack = await self._deliver(entry)
                except KnapsackError as exc:
                    if on_entry is not None:
                        on_entry(entry, exc)
                    if self.retry.is_retryable(exc):
                        self._replay_due = True
                        if raise_unavailable:
                            raise
                        logger.warning("journal replay paused, service unreachable: %s", exc)
                        break
                    if not isinstance(exc, InvalidRequest):
                        self._log_kept(entry, exc)
                    continue
                acknowledged += 1
                if on_entry is not None:
                    on_entry(entry, ack)
            await asyncio.to_thread(self.journal.compact)
        finally:
            self._replaying = False
        if acknowledged:
            logger.info("journal replay: %d report(s) acknowledged", acknowledged)
        return acknowledged

    # ------------------------------------------------------------------ reads

    async def lookup(self, run_id: str, prompt_ids: Sequence[str]) -> LookupResponse:
        """Per-prompt raw counts and the run's current estimates."""
        answer: LookupResponse = await self._send(self._lookup_call(run_id, prompt_ids))
        await self._maybe_replay()
        return answer

    async def summary(self, run_id: str) -> RunSummary:
        """Per-step rollouts, effective-gradient ratio and histograms of the run."""
        answer: RunSummary = await self._send(self._summary_call(run_id))
        await self._maybe_replay()
        return answer

    async def solve(self, request: SolveRequest | Mapping[str, Any]) -> SolveResponse:
        """Stateless allocation for success rates the caller already knows."""
        answer: SolveResponse = await self._send(self._solve_call(request))
        await self._maybe_replay()
        return answer
