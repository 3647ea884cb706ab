"""Exceptions raised by every store.

```
StoreError                 anything the store could not do
├── StoreUnavailable       the backend cannot be reached or cannot answer now
│   │                      (connection refused, timeout, loading, busy, out of memory,
│   │                      cluster down): the service answers degraded or 503
│   └── OutcomeUnknown     a write was sent but its answer never came (a timeout, a
│                          connection lost mid-reply): it may or may not have been
│                          applied; a retry of a report under its report_id is safe
├── RunNotFound            the run has no settings (never created, or deleted)
└── ReportRefused          the report cannot be applied as sent; nothing changed
    ├── CounterOverflow    a prompt's trial counters would overflow their record
    ├── PromptLimitReached the run would track more prompts than KRL_MAX_RUN_PROMPTS
    ├── ReportConflict     its report_id was applied before with other content
    └── ReportExpired      its step is at or below a step whose report ids have left
                           the dedup window: it may be a replay nothing can detect
```

`ReportRefused` carries the wire field it blames (`results.3.trials`, `report_id`,
`step`), so the API can answer a 4xx naming it without knowing store internals.

Lower-layer errors (redis-py) are translated into this tree in one place,
`knapsack_service.store.redis_store.translate_redis_error`, so nothing above the
store ever catches a redis-py exception.
"""

from __future__ import annotations


class StoreError(Exception):
    """The store could not complete an operation."""


class StoreUnavailable(StoreError):
    """The backend is unreachable or refuses work for now; retrying later may succeed."""


class OutcomeUnknown(StoreUnavailable):
    """A write may have been applied although no answer came back.

    Raised instead of a plain `StoreUnavailable` when the command had been sent: a
    report script that outlives the socket timeout still finishes inside Redis, so
    the service must not claim that nothing changed.
    """


class RunNotFound(StoreError):
    """The run has no settings: it was never created or it was deleted."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")
        self.run_id = run_id


class ReportRefused(StoreError):
    """The report breaks a limit of the store; nothing was changed.

    Attributes:
        field: The wire field to blame, dotted (`results.3.trials`).
        reason: What is wrong with it, for the error message.

    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ReportConflict(ReportRefused):
    """The report id was applied before with different content (a digest mismatch)."""

    def __init__(self, report_id: str) -> None:
        super().__init__(
            "report_id",
            f"report_id {report_id!r} was applied before with different content; "
            "give every distinct report its own id (for example include the worker rank)",
        )
        self.report_id = report_id


class PromptLimitReached(ReportRefused):
    """The report would take the run past its prompt limit (KRL_MAX_RUN_PROMPTS)."""

    def __init__(self, limit: int, new: int) -> None:
        super().__init__(
            "results",
            f"the report adds {new} new prompts, which would take the run past its limit "
            f"of {limit} prompts (KRL_MAX_RUN_PROMPTS)",
        )
        self.limit = limit
        self.new = new


class CounterOverflow(ReportRefused):
    """A prompt's trial counters would overflow (48-bit cumulative, 32-bit per step)."""

    def __init__(self, index: int, prompt_id: str) -> None:
        super().__init__(
            f"results.{index}.trials",
            f"prompt {prompt_id!r}'s trial counters would overflow their record (cumulative "
            "trials past 2**48 - 1, or trials within one step past 2**32 - 1)",
        )
        self.index = index
        self.prompt_id = prompt_id


class ReportExpired(ReportRefused):
    """The report's step is closed: report ids of that step have left the dedup window."""

    def __init__(self, step: int, closed_through: int) -> None:
        super().__init__(
            "step",
            f"step {step} is closed: report ids up to step {closed_through} are older than "
            "the dedup window, so a replay of one could no longer be detected",
        )
        self.step = step
        self.closed_through = closed_through


__all__ = [
    "CounterOverflow",
    "OutcomeUnknown",
    "PromptLimitReached",
    "ReportConflict",
    "ReportExpired",
    "ReportRefused",
    "RunNotFound",
    "StoreError",
    "StoreUnavailable",
]
