"""Engine exceptions: input errors name the offending field, so the service can answer 422.

ValueError
└── EngineInputError(field)
    └── InfeasibleBudget(budget, low, high), field "budget"
"""

from __future__ import annotations


class EngineInputError(ValueError):
    """An engine input is invalid; `field` names it as the wire model spells it."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class InfeasibleBudget(EngineInputError):
    """The budget cannot be spent within the per-prompt limits.

    Attributes:
        low: smallest feasible budget.
        high: largest feasible budget (`math.inf` when any larger budget is accepted,
            as with costs, where the budget is an upper limit).

    """

    def __init__(self, budget: float, low: float, high: float, *, detail: str = "") -> None:
        span = f"[{_show(low)}, {_show(high)}]"
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"budget {_show(budget)} outside the feasible range {span}{extra}", field="budget"
        )
        self.budget = budget
        self.low = low
        self.high = high


def _show(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
