"""The strategies the demo compares: service runs and trainer-loop baselines.

A "service" strategy is a run of the budget service with its own settings; the
others (`sim.policies`) act in the trainer loop (DAPO's dynamic sampling,
MoPPS's prompt selection, CoBA-RL's allocation with its trainer-side state).
Each has a budget expressed as a multiple of the base budget (batch * 8), so
"uniform at twice the budget" is the same uniform rule with `budget_factor=2`
(the paper's Fig. 9 baseline). Every strategy but that reference and the
skip-extremes rule spends exactly the base budget every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from knapsack_trainer.sim.policies import CobaPolicy, DynamicSamplingPolicy, MoppsPolicy
from knapsack_trainer.sim.runner import Allocator, AllocatorPolicy, SimConfig, StepPolicy

#: Kinds of strategy: through the service, or one of the trainer-loop policies.
KINDS = ("service", "dapo", "mopps", "coba")


@dataclass(frozen=True)
class StrategySpec:
    """A named run configuration: service settings (or a loop policy) plus a budget multiple."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    budget_factor: int = 1
    description: str = ""
    kind: str = "service"
    #: False only for a rule that may spend less than its budget (skip-extremes).
    spends_budget: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def uses_service(self) -> bool:
        """Whether the strategy's allocations come from the budget service."""
        return self.kind == "service"

    def budget(self, base_budget: int) -> int:
        """Rollouts per step for this strategy."""
        return base_budget * self.budget_factor

    def policy(
        self, config: SimConfig, seed: int, allocator: Allocator | None = None
    ) -> StepPolicy:
        """The step policy of one run (`allocator` is required for service strategies)."""
        if self.kind == "service":
            if allocator is None:
                raise ValueError(f"strategy {self.name} needs an allocator (the service)")
            return AllocatorPolicy(allocator, spends_budget=self.spends_budget)
        if self.kind == "dapo":
            return DynamicSamplingPolicy(config.steps)
        if self.kind == "mopps":
            return MoppsPolicy(config.prompts, seed)
        return CobaPolicy(config.prompts)


#: The paper code's estimator (`rl_dataset.py`): the last visit's mean when that visit
#: had at least 16 rollouts, else the last 16 outcomes; valid after 8.
LAST_VISIT = {"kind": "last-visit", "window": 16, "min_observations": 8}
#: knapsack-bayes's estimator, chosen by `bench/sweep_bayes.py` (BENCHMARKS.md, Demo):
#: the best final success of 15 estimators over 3 seeds (0.846, sd 0.003).
BAYES_ESTIMATOR = {
    "kind": "beta",
    "decay": 0.9,
    "decay_unit": "visit",
    "prior": "pooled",
    "plug_in_from": 4.0,
}
#: The older 16-outcome ring estimator, kept for the skip-extremes rule's history.
WINDOW = {"kind": "window", "window": 16, "min_observations": 8}

DEFAULT_STRATEGIES: tuple[StrategySpec, ...] = (
    StrategySpec(
        "uniform",
        {"strategy": "uniform", "estimator": LAST_VISIT},
        description="GRPO baseline: every prompt gets budget / batch rollouts",
    ),
    StrategySpec(
        "uniform-2x",
        {"strategy": "uniform", "estimator": LAST_VISIT},
        budget_factor=2,
        description="the same baseline with twice the rollouts (Fig. 9 reference, not equal spend)",
    ),
    StrategySpec(
        "dapo",
        kind="dapo",
        description="DAPO dynamic sampling: drop all-agree groups, refill the batch from the "
        "next generation batches, step once it is full (same rollouts per step)",
    ),
    StrategySpec(
        "mopps",
        kind="mopps",
        description="MoPPS: Thompson-sample discounted Beta posteriors of 4x batch candidates, "
        "train on the batch closest to p = 0.5, 8 rollouts each",
    ),
    StrategySpec(
        "coba",
        kind="coba",
        description="CoBA-RL: capability-dependent Beta value, heap greedy, 20% to hard prompts",
    ),
    StrategySpec(
        "knapsack",
        {"strategy": "knapsack", "fallback": True, "estimator": LAST_VISIT},
        description="the paper: knapsack over Value(N, p), its fallback rule and estimator",
    ),
    StrategySpec(
        "knapsack-bayes",
        {"strategy": "knapsack-bayes", "estimator": BAYES_ESTIMATOR},
        description="expected value under each prompt's Beta posterior (decay 0.9 per visit, "
        "pooled prior, posteriors of strength >= 4 valued at their mean)",
    ),
)

#: Strategies one can ask for by name but that the demo does not run by default.
OPTIONAL_STRATEGIES: tuple[StrategySpec, ...] = (
    StrategySpec(
        "coba-service",
        {"strategy": "coba", "estimator": LAST_VISIT},
        description="CoBA-RL served by the service: the capability from the batch's own "
        "(stale) estimates instead of the previous step's outcomes",
    ),
    StrategySpec(
        "skip-extremes",
        {"strategy": "filter", "estimator": WINDOW},
        spends_budget=False,
        description="the service's `filter` rule: skip prompts estimated at p = 0 or 1 for good "
        "(never re-sampled, so never re-estimated) and spend what is left; it cannot spend "
        "the budget once few prompts remain, so it is not at equal rollouts",
    ),
)


def strategy_by_name(name: str) -> StrategySpec:
    """Look up a default or optional strategy; raises `KeyError` naming the choices."""
    for spec in DEFAULT_STRATEGIES + OPTIONAL_STRATEGIES:
        if spec.name == name:
            return spec
    names = ", ".join(s.name for s in DEFAULT_STRATEGIES + OPTIONAL_STRATEGIES)
    raise KeyError(f"unknown strategy {name!r}; choose from {names}")
