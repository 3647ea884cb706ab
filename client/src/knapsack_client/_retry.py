"""Retry policy: how often and how long to wait before asking the service again.

Retries use capped exponential backoff with full jitter (each wait drawn
uniformly from `[0, min(max_delay, base_delay * 2**retry)]`), the variant that
spreads a crowd of trainers best after an outage (AWS Architecture Blog,
"Exponential Backoff And Jitter", 2015). A Retry-After from the service wins
over the drawn delay, capped by `max_retry_after`.

Only errors that waiting can fix are retried: ServiceUnavailable except
ServerError. Every request the client sends is safe to repeat: PUT is
idempotent, reads are reads, an outcome report carries a report_id that the
service counts once, and a repeated allocation only recomputes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from knapsack_client._exceptions import KnapsackError, ServerError, ServiceUnavailable

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BASE_DELAY = 0.2
DEFAULT_MAX_DELAY = 5.0
DEFAULT_MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry a request.

    Attributes:
        max_attempts: Tries in all, the first included (1 = never retry).
        base_delay: Backoff cap of the first retry, in seconds; doubles each retry.
        max_delay: Largest backoff cap, in seconds.
        max_retry_after: Largest wait accepted from a Retry-After header, in seconds.
        random: Source of uniform numbers in [0, 1) for the jitter (inject for tests).
        sleep: Blocking sleep used by the sync client (inject for tests).
        async_sleep: Sleep awaited by the async client (inject for tests).

    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must not be negative")

    def with_(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed (keeps the injected random and sleeps)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def delay_before_retry(self, retries_done: int, error: KnapsackError) -> float | None:
        """Seconds to wait before the next try, or None when the error is final.

        Args:
            retries_done: Retries already made (0 after the first failed try).
            error: What the last try raised.

        """
        if not self.is_retryable(error) or retries_done + 1 >= self.max_attempts:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.max_retry_after)
        cap = min(self.max_delay, self.base_delay * (2.0**retries_done))
        return self.random() * cap

    @staticmethod
    def is_retryable(error: KnapsackError) -> bool:
        """Whether waiting may fix the error (never for a 4xx or a service bug)."""
        return isinstance(error, ServiceUnavailable) and not isinstance(error, ServerError)


#: Default for every call.
DEFAULT_RETRY = RetryPolicy()
