"""Exceptions raised by every store.

```
StoreError                 anything the store could not do
├── StoreUnavailable       the backend cannot be reached or cannot answer now
│                          (connection refused, timeout, loading, busy, out of memory,
│                          cluster down): the service answers degraded or 503
└── RunNotFound            the run has no settings (never created, or deleted)
```

Lower-layer errors (redis-py) are translated into this tree in one place,
`knapsack_service.store.redis_store.translate_redis_error`, so nothing above the
store ever catches a redis-py exception.
"""

from __future__ import annotations


class StoreError(Exception):
    """The store could not complete an operation."""


class StoreUnavailable(StoreError):
    """The backend is unreachable or refuses work for now; retrying later may succeed."""


class RunNotFound(StoreError):
    """The run has no settings: it was never created or it was deleted."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")
        self.run_id = run_id


__all__ = ["RunNotFound", "StoreError", "StoreUnavailable"]
