"""What one app instance holds: settings, store, metrics, readiness, the runs served."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from knapsack_service.metrics import ServiceMetrics
from knapsack_service.runs import KnownRuns
from knapsack_service.settings import Settings
from knapsack_service.store import Store


@dataclass
class ServiceState:
    """Created in the lifespan, reached by handlers through `deps.py`.

    Attributes:
        known_runs: settings of the runs served lately, for degraded answers.
        summary_writes: per run, the allocation-summary writes still in flight; a
            summary read waits for them, so it sees every allocation answered before.

    """

    settings: Settings
    store: Store
    metrics: ServiceMetrics
    kernels_ready: bool = False
    known_runs: KnownRuns = field(default_factory=KnownRuns)
    summary_writes: dict[str, set[asyncio.Task[None]]] = field(default_factory=dict)
