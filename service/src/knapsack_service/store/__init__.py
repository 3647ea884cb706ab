"""Per-run settings and per-prompt success statistics, in Redis or in memory.

Both stores implement `Store` with identical semantics (`records.py` is the
reference; the Redis scripts in `lua/` match it byte for byte).
"""

from __future__ import annotations

from knapsack_service.store.base import (
    ApplyResult,
    GroupOutcome,
    PromptBatch,
    RateMoments,
    ReportToApply,
    Store,
    StoreMemory,
)
from knapsack_service.store.errors import (
    CounterOverflow,
    OutcomeUnknown,
    PromptLimitReached,
    ReportConflict,
    ReportExpired,
    ReportRefused,
    RunNotFound,
    StoreError,
    StoreUnavailable,
)
from knapsack_service.store.memory_store import MemoryStore
from knapsack_service.store.records import RING_BITS
from knapsack_service.store.redis_store import DEFAULT_TIMEOUT, RedisStore, pool_size_for


def create_store(
    redis_url: str | None,
    timeout: float = DEFAULT_TIMEOUT,
    cluster: bool = False,
    *,
    max_concurrency: int = 256,
) -> Store:
    """The Redis store for `redis_url`, or the memory store when it is None or empty.

    A Redis Cluster is used when `cluster` is true (KRL_REDIS_CLUSTER) or the URL's
    scheme is `redis+cluster://` / `rediss+cluster://`. The connection pool is sized
    from `max_concurrency` (KRL_MAX_CONCURRENCY), so every request the service admits
    finds a connection.
    """
    if redis_url:
        return RedisStore.from_url(
            redis_url,
            timeout=timeout,
            cluster=cluster,
            max_connections=pool_size_for(max_concurrency),
        )
    return MemoryStore()


__all__ = [
    "DEFAULT_TIMEOUT",
    "RING_BITS",
    "ApplyResult",
    "CounterOverflow",
    "GroupOutcome",
    "MemoryStore",
    "OutcomeUnknown",
    "PromptBatch",
    "PromptLimitReached",
    "RateMoments",
    "RedisStore",
    "ReportConflict",
    "ReportExpired",
    "ReportRefused",
    "ReportToApply",
    "RunNotFound",
    "Store",
    "StoreError",
    "StoreMemory",
    "StoreUnavailable",
    "create_store",
]
