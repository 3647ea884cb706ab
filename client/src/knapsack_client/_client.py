"""Sync and async clients of the knapsack-rl service: only the I/O.

Everything else — requests, retries, the offline fallback, journal delivery and
replay — lives once in the sans-I/O core (`_core.ClientCore`). Each client
performs the core's effects its own way (`_perform`) and mirrors the other
method for method (`close`/`aclose`, `__enter__`/`__aenter__`), as httpx's own
clients do. Construction does no I/O, so building a client never blocks on an
unreachable service.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from knapsack_client import _calls
from knapsack_client._calls import DEFAULT_BASE_URL, derive_report_id
from knapsack_client._core import (
    DEFAULT_TIMEOUT,
    ClientCore,
    Effect,
    Operation,
    Pause,
    ReplayCallback,
    Send,
    T,
)
from knapsack_client._exceptions import map_transport_error
from knapsack_client._models import (
    AllocationResponse,
    LookupResponse,
    OutcomeAck,
    PromptResult,
    RunInfo,
    RunSettings,
    RunSummary,
    SolveRequest,
    SolveResponse,
)
from knapsack_client._retry import DEFAULT_RETRY, RetryPolicy

#: Connections kept open for reuse; a trainer talks to one service.
DEFAULT_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=8)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "AsyncKnapsackClient",
    "KnapsackClient",
    "derive_report_id",
]


class KnapsackClient(ClientCore):
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

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Send):
            request = self._build(self._http, effect.call)
            try:
                return self._http.send(request)
            except httpx.HTTPError as exc:
                return map_transport_error(exc, request.url.path)
        if isinstance(effect, Pause):
            return effect.policy.sleep(effect.seconds)
        return effect.operation()

    def _drive(self, operation: Operation[T]) -> T:
        """Run a core operation to its end, performing each effect it yields."""
        try:
            effect = next(operation)
            while True:
                try:
                    result = self._perform(effect)
                except BaseException as exc:  # the operation's own handlers see it first
                    effect = operation.throw(exc)
                else:
                    effect = operation.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ runs

    def ensure_run(
        self, run_id: str, settings: RunSettings | Mapping[str, Any] | None = None
    ) -> RunInfo:
        """Create the run, or update its settings; call once at trainer start-up.

        With settings, PUTs them (idempotent). Without, keeps an existing run's
        settings and creates the run with defaults only if it does not exist.
        The settings are kept for allocate()'s offline fallback, also when the
        service cannot be reached (the error is still raised).
        """
        return self._drive(self._do_ensure_run(run_id, settings))

    def get_run(self, run_id: str) -> RunInfo:
        """The run's settings and counters."""
        return self._drive(self._do_get_run(run_id))

    def delete_run(self, run_id: str) -> None:
        """Remove every key of the run from the service."""
        self._drive(self._do_delete_run(run_id))

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
        request = _calls.allocation_request(
            step,
            prompts,
            budget=budget,
            workers=workers,
            split_groups=split_groups,
            strategy=strategy,
            min_n=min_n,
            max_n=max_n,
        )
        return self._drive(self._do_allocate(run_id, request))

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
        so the caller knows it is late). A final refusal (4xx other than 408/429)
        drops it with a logged error: it can never succeed.
        """
        entry = _calls.report_entry(
            run_id, step, results, report_id=report_id, worker=worker, attempt=attempt
        )
        return self._drive(self._do_report(entry))

    def replay_journal(self, *, on_entry: ReplayCallback | None = None) -> int:
        """Resend every unacknowledged report of the journal; returns how many were acknowledged.

        Raises ServiceUnavailable (keeping the rest) when the service cannot be reached.
        A report refused for good is dropped; one that failed otherwise (a service
        bug) is kept and logged. `on_entry` sees each outcome.
        """
        return self._drive(self._do_replay(catch_up=False, on_entry=on_entry))

    # ------------------------------------------------------------------ reads

    def lookup(self, run_id: str, prompt_ids: Sequence[str]) -> LookupResponse:
        """Per-prompt raw counts and the run's current estimates."""
        return self._drive(self._do_read(_calls.lookup(run_id, prompt_ids)))

    def summary(self, run_id: str) -> RunSummary:
        """Per-step rollouts, effective-gradient ratio and histograms of the run."""
        return self._drive(self._do_read(_calls.summary(run_id)))

    def solve(self, request: SolveRequest | Mapping[str, Any]) -> SolveResponse:
        """Stateless allocation for success rates the caller already knows."""
        return self._drive(self._do_read(_calls.solve(request)))


class AsyncKnapsackClient(ClientCore):
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

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Send):
            request = self._build(self._http, effect.call)
            try:
                return await self._http.send(request)
            except httpx.HTTPError as exc:
                return map_transport_error(exc, request.url.path)
        if isinstance(effect, Pause):
            return await effect.policy.async_sleep(effect.seconds)
        return await asyncio.to_thread(effect.operation)

    async def _drive(self, operation: Operation[T]) -> T:
        """Run a core operation to its end, awaiting each effect it yields."""
        try:
            effect = next(operation)
            while True:
                try:
                    result = await self._perform(effect)
                except BaseException as exc:  # the operation's own handlers see it first
                    effect = operation.throw(exc)
                else:
                    effect = operation.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ runs

    async def ensure_run(
        self, run_id: str, settings: RunSettings | Mapping[str, Any] | None = None
    ) -> RunInfo:
        """Create the run, or update its settings (see KnapsackClient.ensure_run)."""
        return await self._drive(self._do_ensure_run(run_id, settings))

    async def get_run(self, run_id: str) -> RunInfo:
        """The run's settings and counters."""
        return await self._drive(self._do_get_run(run_id))

    async def delete_run(self, run_id: str) -> None:
        """Remove every key of the run from the service."""
        await self._drive(self._do_delete_run(run_id))

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
        request = _calls.allocation_request(
            step,
            prompts,
            budget=budget,
            workers=workers,
            split_groups=split_groups,
            strategy=strategy,
            min_n=min_n,
            max_n=max_n,
        )
        return await self._drive(self._do_allocate(run_id, request))

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
        entry = _calls.report_entry(
            run_id, step, results, report_id=report_id, worker=worker, attempt=attempt
        )
        return await self._drive(self._do_report(entry))

    async def replay_journal(self, *, on_entry: ReplayCallback | None = None) -> int:
        """Resend every unacknowledged report (see KnapsackClient.replay_journal)."""
        return await self._drive(self._do_replay(catch_up=False, on_entry=on_entry))

    # ------------------------------------------------------------------ reads

    async def lookup(self, run_id: str, prompt_ids: Sequence[str]) -> LookupResponse:
        """Per-prompt raw counts and the run's current estimates."""
        return await self._drive(self._do_read(_calls.lookup(run_id, prompt_ids)))

    async def summary(self, run_id: str) -> RunSummary:
        """Per-step rollouts, effective-gradient ratio and histograms of the run."""
        return await self._drive(self._do_read(_calls.summary(run_id)))

    async def solve(self, request: SolveRequest | Mapping[str, Any]) -> SolveResponse:
        """Stateless allocation for success rates the caller already knows."""
        return await self._drive(self._do_read(_calls.solve(request)))
