"""The allocation strategies the demo compares, as run settings for the service.

Each strategy is a run of the service with its own settings and a budget
expressed as a multiple of the base budget (batch * 8), so "uniform at twice
the budget" is the same uniform rule with `budget_factor=2` (the paper's
Fig. 9 baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StrategySpec:
    """A named run configuration: service settings plus a budget multiple."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    budget_factor: int = 1
    description: str = ""

    def budget(self, base_budget: int) -> int:
        """Rollouts per step for this strategy."""
        return base_budget * self.budget_factor


#: The paper's window estimator: last 16 outcomes, at least 8 before it counts.
WINDOW = {"kind": "window", "window": 16, "min_observations": 8}

DEFAULT_STRATEGIES: tuple[StrategySpec, ...] = (
    StrategySpec(
        "uniform",
        {"strategy": "uniform", "estimator": WINDOW},
        description="GRPO baseline: every prompt gets budget / batch rollouts",
    ),
    StrategySpec(
        "uniform-2x",
        {"strategy": "uniform", "estimator": WINDOW},
        budget_factor=2,
        description="the same baseline with twice the rollouts (Fig. 9)",
    ),
    StrategySpec(
        "filter",
        {"strategy": "filter", "estimator": WINDOW},
        description="online difficulty filtering: skip prompts estimated at p = 0 or 1",
    ),
    StrategySpec(
        "knapsack",
        {"strategy": "knapsack", "fallback": True, "estimator": WINDOW},
        description="the paper: knapsack over Value(N, p), fallback to p = 0 prompts",
    ),
    StrategySpec(
        "knapsack-bayes",
        {
            "strategy": "knapsack-bayes",
            "estimator": {"kind": "beta", "decay": 0.9, "prior": "pooled"},
        },
        description="expected value under each prompt's Beta posterior",
    ),
)


def strategy_by_name(name: str) -> StrategySpec:
    """Look up one of `DEFAULT_STRATEGIES`; raises `KeyError` naming the choices."""
    for spec in DEFAULT_STRATEGIES:
        if spec.name == name:
            return spec
    names = ", ".join(s.name for s in DEFAULT_STRATEGIES)
    raise KeyError(f"unknown strategy {name!r}; choose from {names}")
