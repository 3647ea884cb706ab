"""What one app instance holds: settings, store, metrics and readiness."""

from __future__ import annotations

from dataclasses import dataclass, field

from knapsack_service.metrics import ServiceMetrics
from knapsack_service.settings import Settings
from knapsack_service.store import Store


@dataclass
class ServiceState:
    """Created in the lifespan, reached by handlers through `deps.py`."""

    settings: Settings
    store: Store
    metrics: ServiceMetrics
    kernels_ready: bool = False
    notes: dict[str, str] = field(default_factory=dict)
