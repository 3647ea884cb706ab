"""Runs: their settings (with the bounded memory of the runs served), counters, deletion.

The service remembers the settings of the runs it has served, in a bounded LRU
(`KnownRuns`), so that an allocation answered while the store is down still
honours the run's limits (max_n, budget, min_n); a run it has not seen since it
started cannot be honoured, so it answers 503 rather than guess (issue 12, item 7).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from threading import Lock

from knapsack_client import RunCounters, RunInfo, RunSettings
from knapsack_service.engine import known_strategies
from knapsack_service.settings import Settings
from knapsack_service.store import RunNotFound, Store

#: Runs whose settings are remembered for degraded answers (a few hundred bytes each).
KNOWN_RUNS_LIMIT = 10_000


@lru_cache(maxsize=1024)
def parse_settings(raw: str) -> RunSettings:
    """Stored settings JSON -> model, cached by text: every allocation needs them."""
    return RunSettings.model_validate_json(raw)


class InvalidField(ValueError):
    """A request the models accept but the service refuses (a limit); `field` names it.

    Domain code raises it; the API answers 422 naming the field (errors.py).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def list_limits(settings: Settings) -> dict[str, int]:
    """Longest list each request field may hold (`KRL_MAX_PROMPTS`, `KRL_MAX_REPORT_RESULTS`)."""
    per_request = settings.max_prompts
    return {
        "prompts": per_request,
        "prompt_ids": per_request,
        "success_rates": per_request,
        "posterior": per_request,
        "results": min(per_request, settings.max_report_results),
    }


def check_count(settings: Settings, field: str, count: int) -> None:
    """Refuse a list longer than the service's per-request limit for `field`."""
    check_count_limit(field, count, list_limits(settings)[field])


def check_count_limit(field: str, count: int, limit: int) -> None:
    """`InvalidField` when `count` entries exceed `limit`."""
    if count > limit:
        raise InvalidField(field, f"at most {limit} entries per request, got {count}")


class _Unknown:
    """The marker of a last step this process has not read yet."""


UNKNOWN = _Unknown()


class KnownRuns:
    """The settings of the runs served lately, least recently used dropped first.

    Threads touch it too (large allocations finish in the threadpool), hence the lock.
    """

    def __init__(self, limit: int = KNOWN_RUNS_LIMIT) -> None:
        self._limit = limit
        self._settings: OrderedDict[str, RunSettings] = OrderedDict()
        self._last_steps: dict[str, int | None] = {}
        self._lock = Lock()

    def remember(self, run_id: str, settings: RunSettings) -> RunSettings:
        """Keep `settings` as the run's latest; returns them."""
        with self._lock:
            self._settings[run_id] = settings
            self._settings.move_to_end(run_id)
            while len(self._settings) > self._limit:
                dropped, _ = self._settings.popitem(last=False)
                self._last_steps.pop(dropped, None)
        return settings

    def get(self, run_id: str) -> RunSettings | None:
        """The run's last known settings, or None."""
        with self._lock:
            return self._settings.get(run_id)

    def forget(self, run_id: str) -> None:
        """The run is gone (deleted, or its settings missing from the store)."""
        with self._lock:
            self._settings.pop(run_id, None)
            self._last_steps.pop(run_id, None)

    def last_step(self, run_id: str) -> int | _Unknown | None:
        """The run's last reported step as this process knows it (`UNKNOWN` if never read)."""
        with self._lock:
            return self._last_steps.get(run_id, UNKNOWN) if run_id in self._settings else UNKNOWN

    def note_step(self, run_id: str, step: int | None) -> None:
        """Record a reported step (the run's last step only ever grows)."""
        with self._lock:
            if run_id not in self._settings:
                return
            known = self._last_steps.get(run_id)
            if step is not None and (known is None or step > known):
                self._last_steps[run_id] = step
            elif run_id not in self._last_steps:
                self._last_steps[run_id] = known

    def __len__(self) -> int:
        return len(self._settings)


async def check_step(
    store: Store, known: KnownRuns, settings: Settings, run_id: str, step: int
) -> None:
    """Refuse a step beyond the run's last reported step plus `KRL_MAX_STEP_AHEAD`.

    One report at step 2^31 - 1 would otherwise pin the run's last step and make every
    later report "late", freezing the Beta estimates for good (issue 12, item 9). A
    run without reports counts from step 0. The last step is kept per process and
    read from the store only when unknown, or before refusing (another process may
    have seen later reports).
    """
    last = known.last_step(run_id)
    if isinstance(last, _Unknown) or step > (last or 0) + settings.max_step_ahead:
        last = (await store.read_counters(run_id))["last_step"]
        known.note_step(run_id, last)
    horizon = (last or 0) + settings.max_step_ahead
    if step > horizon:
        since = f"the run's last reported step {last}" if last is not None else "step 0"
        raise InvalidField(
            "step",
            f"step {step} is more than {settings.max_step_ahead} steps beyond {since}"
            f" (at most {horizon}; KRL_MAX_STEP_AHEAD)",
        )


async def read_settings(store: Store, known: KnownRuns, run_id: str) -> RunSettings:
    """The run's settings from the store; `RunNotFound` if it has none."""
    raw = await store.get_settings(run_id)
    return settings_from_store(known, run_id, raw)


def settings_from_store(known: KnownRuns, run_id: str, raw: str | None) -> RunSettings:
    """Parse what the store holds for a run, remembering it (or forgetting a gone run)."""
    if raw is None:
        known.forget(run_id)
        raise RunNotFound(run_id)
    return known.remember(run_id, parse_settings(raw))


async def put_run(store: Store, known: KnownRuns, run_id: str, settings: RunSettings) -> RunInfo:
    """Create or replace the run's settings; `created` tells which.

    Raises:
        InvalidField: the strategy is not one the engine registers (nothing written).
    """
    names = known_strategies()
    if settings.strategy not in names:
        known_names = ", ".join(names)
        raise InvalidField("strategy", f"unknown strategy {settings.strategy!r}: {known_names}")
    created = await store.put_settings(run_id, settings.model_dump_json())
    known.remember(run_id, settings)
    counters = await store.read_counters(run_id)
    return RunInfo(
        run_id=run_id, settings=settings, counters=RunCounters(**counters), created=created
    )


async def run_info(store: Store, known: KnownRuns, run_id: str) -> RunInfo:
    """Settings and counters; `RunNotFound` if the run is missing (or deleted meanwhile)."""
    settings = await read_settings(store, known, run_id)
    counters = await store.read_counters(run_id)
    return RunInfo(run_id=run_id, settings=settings, counters=RunCounters(**counters))


async def delete_run(store: Store, known: KnownRuns, run_id: str) -> None:
    """Remove every key of the run; `RunNotFound` if nothing existed."""
    known.forget(run_id)
    if not await store.delete_run(run_id):
        raise RunNotFound(run_id)


__all__ = [
    "KNOWN_RUNS_LIMIT",
    "UNKNOWN",
    "InvalidField",
    "KnownRuns",
    "check_count",
    "check_count_limit",
    "check_step",
    "delete_run",
    "list_limits",
    "parse_settings",
    "put_run",
    "read_settings",
    "run_info",
    "settings_from_store",
]
