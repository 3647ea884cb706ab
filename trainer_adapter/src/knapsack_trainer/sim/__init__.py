"""A fast, seeded model of GRPO learning dynamics that asks the service for budgets.

`simulate()` runs the loop a trainer runs (allocate, roll out, update, report)
on a synthetic prompt set with held-out prompts; `ServiceAllocator` connects it
to the knapsack-rl service through `knapsack_client`, embedded in-process or
over the network; `policies` holds the trainer-loop baselines (DAPO, MoPPS, CoBA).
"""

from knapsack_trainer.embedded import embedded_client
from knapsack_trainer.sim.dataset import DifficultyMix, PromptSet
from knapsack_trainer.sim.dynamics import RETURNS, LearningRates, SkillModel, group_signal
from knapsack_trainer.sim.metrics import StepMetrics
from knapsack_trainer.sim.policies import CobaPolicy, DynamicSamplingPolicy, MoppsPolicy
from knapsack_trainer.sim.runner import (
    Allocation,
    Allocator,
    AllocatorPolicy,
    SimConfig,
    SimResult,
    StepPolicy,
    UnequalSpendError,
    simulate,
)
from knapsack_trainer.sim.service import DegradedAllocationError, ServiceAllocator, remote_client
from knapsack_trainer.sim.strategies import (
    DEFAULT_STRATEGIES,
    OPTIONAL_STRATEGIES,
    StrategySpec,
    strategy_by_name,
)

__all__ = [
    "DEFAULT_STRATEGIES",
    "OPTIONAL_STRATEGIES",
    "RETURNS",
    "Allocation",
    "Allocator",
    "AllocatorPolicy",
    "CobaPolicy",
    "DegradedAllocationError",
    "DifficultyMix",
    "DynamicSamplingPolicy",
    "LearningRates",
    "MoppsPolicy",
    "PromptSet",
    "ServiceAllocator",
    "SimConfig",
    "SimResult",
    "SkillModel",
    "StepMetrics",
    "StepPolicy",
    "StrategySpec",
    "UnequalSpendError",
    "embedded_client",
    "group_signal",
    "remote_client",
    "simulate",
    "strategy_by_name",
]
