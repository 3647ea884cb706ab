"""Prometheus metrics of the service (names follow prometheus/docs naming practices).

One `ServiceMetrics` per app, on its own `CollectorRegistry`, so tests and
several apps in one process never share counters. Labels stay low-cardinality:
never a prompt id; run ids only on a few gauges, and only for `max_metric_runs`
runs at a time. A run's label slot is freed when the run is deleted, or when it
has not reported for `idle_seconds` and another run needs the slot; until a slot
frees, newcomers fold into `run="_other"`. So one tenant's throwaway runs cannot
keep another team's run out of the gauges for good.

The deployment runs one uvicorn worker per pod (the HPA scales pods), so the
per-process registry is the whole truth for its pod; see deploy/README.md.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from knapsack_service import __version__
from knapsack_service.bands import DIFFICULTY_METRIC_LABELS

#: Bands of estimated success rate (the paper's Fig. 5), as label values; see bands.py.
DIFFICULTY_BUCKETS = DIFFICULTY_METRIC_LABELS

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
_SOLVE_BUCKETS = (
    0.00002,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
OTHER_RUNS = "_other"


class ServiceMetrics:
    """Every metric the service exports, registered on one registry."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        max_runs: int = 100,
        idle_seconds: float = 3600.0,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._max_runs = max_runs
        self._idle_seconds = idle_seconds
        #: Labelled runs, least recently reported first, with when they last reported.
        self._runs: OrderedDict[str, float] = OrderedDict()
        self._runs_lock = threading.Lock()
        r = self.registry
        self.requests = Counter(
            "krl_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "krl_http_request_duration_seconds",
            "HTTP request latency.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.solve_seconds = Histogram(
            "krl_solve_duration_seconds",
            "Time spent in the knapsack engine per solve.",
            ["strategy"],
            buckets=_SOLVE_BUCKETS,
            registry=r,
        )
        self.allocations = Counter(
            "krl_allocations",
            "Allocations answered, by strategy and degraded flag.",
            ["strategy", "degraded"],
            registry=r,
        )
        self.degraded = Counter(
            "krl_degraded_allocations",
            "Allocations answered uniformly because the store failed.",
            ["reason"],
            registry=r,
        )
        self.rollouts_allocated = Counter(
            "krl_rollouts_allocated",
            "Rollouts handed out by allocations.",
            ["strategy"],
            registry=r,
        )
        self.prompts_by_difficulty = Counter(
            "krl_prompts_allocated_by_difficulty",
            "Prompts allocated, by estimated difficulty.",
            ["bucket"],
            registry=r,
        )
        self.rollouts_by_difficulty = Counter(
            "krl_rollouts_allocated_by_difficulty",
            "Rollouts allocated, by estimated difficulty.",
            ["bucket"],
            registry=r,
        )
        self.reports = Counter(
            "krl_reports",
            "Outcome reports by result (applied, duplicate, rejected).",
            ["result"],
            registry=r,
        )
        self.duplicate_reports = Counter(
            "krl_duplicate_reports", "Reports whose report_id had already been applied.", registry=r
        )
        self.outcomes = Counter(
            "krl_outcomes_ingested", "Rollout outcomes applied to prompt statistics.", registry=r
        )
        self.store_errors = Counter(
            "krl_store_errors", "Store operations that failed.", ["operation"], registry=r
        )
        self.store_up = Gauge("krl_store_up", "1 when the last store call succeeded.", registry=r)
        self.store_memory_used = Gauge(
            "krl_store_memory_used_bytes",
            "Memory the store (Redis used_memory; a cluster's fullest node) uses.",
            registry=r,
        )
        self.store_memory_max = Gauge(
            "krl_store_memory_max_bytes",
            "The store's memory limit (Redis maxmemory); 0 when none is set.",
            registry=r,
        )
        self.ready = Gauge(
            "krl_ready", "1 once kernels are compiled and the store answers.", registry=r
        )
        self.run_effective_ratio = Gauge(
            "krl_run_effective_gradient_ratio",
            "Share of the last reported step's rollouts in groups with mixed outcomes.",
            ["run"],
            registry=r,
        )
        self.run_all_success = Gauge(
            "krl_run_all_success_share",
            "Share of the last step's groups that all succeeded.",
            ["run"],
            registry=r,
        )
        self.run_all_failure = Gauge(
            "krl_run_all_failure_share",
            "Share of the last step's groups that all failed.",
            ["run"],
            registry=r,
        )
        self.run_last_step = Gauge(
            "krl_run_last_step", "Last step reported for a run.", ["run"], registry=r
        )
        self.inflight = Gauge("krl_inflight_requests", "Requests being served.", registry=r)
        self.rejected = Counter(
            "krl_rejected_requests",
            "Requests refused before handling (overload, body too large).",
            ["reason"],
            registry=r,
        )
        Info("krl_build", "Service version.", registry=r).info({"version": __version__})
        for bucket in DIFFICULTY_BUCKETS:
            self.prompts_by_difficulty.labels(bucket)
            self.rollouts_by_difficulty.labels(bucket)
        for result in ("applied", "duplicate", "rejected"):
            self.reports.labels(result)
        self.store_up.set(1)

    @property
    def _run_gauges(self) -> tuple[Gauge, ...]:
        return (
            self.run_effective_ratio,
            self.run_all_success,
            self.run_all_failure,
            self.run_last_step,
        )

    def run_label(self, run_id: str) -> str:
        """The run's label value, bounded to `max_runs` runs at a time.

        A new run takes a free slot, else the slot of the least recently reported run
        if that one has been idle for `idle_seconds`, else folds into `_other`.
        """
        now = time.monotonic()
        with self._runs_lock:
            runs = self._runs
            if run_id in runs:
                runs[run_id] = now
                runs.move_to_end(run_id)
                return run_id
            if len(runs) >= self._max_runs:
                oldest, last_seen = next(iter(runs.items()))
                if now - last_seen < self._idle_seconds:
                    return OTHER_RUNS
                self._drop_run(oldest)
            runs[run_id] = now
            return run_id

    def forget_run(self, run_id: str) -> None:
        """Free a deleted run's label slot and remove its series from every gauge."""
        with self._runs_lock:
            if run_id in self._runs:
                self._drop_run(run_id)

    def labelled_runs(self) -> list[str]:
        """Runs holding a label slot, least recently reported first."""
        with self._runs_lock:
            return list(self._runs)

    def _drop_run(self, run_id: str) -> None:
        del self._runs[run_id]
        for gauge in self._run_gauges:
            with contextlib.suppress(KeyError):  # older clients raise for unknown labels
                gauge.remove(run_id)
