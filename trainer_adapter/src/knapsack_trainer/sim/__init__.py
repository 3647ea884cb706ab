"""A fast, seeded model of GRPO learning dynamics that asks the service for budgets.

`simulate()` runs the loop a trainer runs (allocate, roll out, update, report)
on a synthetic prompt set; `ServiceAllocator` connects it to the knapsack-rl
service through `knapsack_client`, embedded in-process or over the network.
"""

from knapsack_trainer.embedded import embedded_client
from knapsack_trainer.sim.dataset import DifficultyMix, PromptSet
from knapsack_trainer.sim.dynamics import LearningRates, SkillModel, group_signal
from knapsack_trainer.sim.metrics import StepMetrics
from knapsack_trainer.sim.runner import Allocation, Allocator, SimConfig, SimResult, simulate
from knapsack_trainer.sim.service import DegradedAllocationError, ServiceAllocator, remote_client
from knapsack_trainer.sim.strategies import DEFAULT_STRATEGIES, StrategySpec, strategy_by_name

__all__ = [
    "DEFAULT_STRATEGIES",
    "Allocation",
    "Allocator",
    "DegradedAllocationError",
    "DifficultyMix",
    "LearningRates",
    "PromptSet",
    "ServiceAllocator",
    "SimConfig",
    "SimResult",
    "SkillModel",
    "StepMetrics",
    "StrategySpec",
    "embedded_client",
    "group_signal",
    "remote_client",
    "simulate",
    "strategy_by_name",
]
