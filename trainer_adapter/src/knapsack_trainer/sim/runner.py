"""The simulation loop: one run of GRPO dynamics against an allocator.

The loop does what a trainer does each step: take the next batch, ask for the
allocation, roll out (here: draw Binomial(n_i, p_i) successes), update the
policy, and report the outcomes so the next allocation is better informed.
Only the allocator talks to the service, so the same loop runs against the
embedded app or a service on the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from knapsack_trainer.sim import metrics
from knapsack_trainer.sim.dataset import DifficultyMix, PromptSet
from knapsack_trainer.sim.dynamics import LearningRates, SkillModel


@dataclass(frozen=True)
class Allocation:
    """Group sizes for one batch, in the batch's order."""

    trials: np.ndarray  # (batch,) int64
    degraded: bool = False


class Allocator(Protocol):
    """What the loop needs from the budget service (see `sim.service`)."""

    def allocate(self, step: int, prompt_ids: Sequence[str], budget: int) -> Allocation:
        """Group size of every prompt of the batch, summing to `budget`."""
        ...

    def report(
        self,
        step: int,
        prompt_ids: Sequence[str],
        successes: np.ndarray,
        trials: np.ndarray,
    ) -> None:
        """Send the step's outcomes (prompts with at least one rollout)."""
        ...


@dataclass(frozen=True)
class SimConfig:
    """Size and learning speed of a simulated run.

    The defaults follow the paper's setting (256 prompts per batch, 8 rollouts
    per prompt on average, so a budget of 2,048) on a dataset of 2,560 prompts
    (ten steps per epoch), with rates that make 100 to 200 steps show the
    early, middle and late phases of Fig. 2.
    """

    prompts: int = 2560
    topics: int = 32
    batch_size: int = 256
    rollouts_per_prompt: int = 8
    steps: int = 150
    rates: LearningRates = field(default_factory=LearningRates)
    difficulty: DifficultyMix = field(default_factory=DifficultyMix)

    @property
    def base_budget(self) -> int:
        """Rollouts per step at the base budget (batch * rollouts per prompt)."""
        return self.batch_size * self.rollouts_per_prompt

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= self.prompts:
            raise ValueError("batch_size must be between 1 and the number of prompts")
        if self.steps < 1 or self.rollouts_per_prompt < 1 or self.topics < 1:
            raise ValueError("steps, rollouts_per_prompt and topics must be positive")


@dataclass
class SimResult:
    """Everything one run produced."""

    seed: int
    budget: int
    steps: list[metrics.StepMetrics]
    initial_difficulty: dict[str, int]
    final_difficulty: dict[str, int]


def seeded_generators(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent streams for the dataset, the batch order and the outcomes.

    Separate streams keep the dataset and the batches identical across
    strategies run with the same seed, whatever the allocations consume.
    """
    return tuple(np.random.default_rng([seed, stream]) for stream in range(3))


def batch_order(prompts: int, batch_size: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """(steps, batch_size) prompt indices: epochs of shuffled prompts, cut in batches."""
    needed = steps * batch_size
    epochs = -(-needed // prompts)
    order = np.concatenate([rng.permutation(prompts) for _ in range(epochs)])
    return order[:needed].reshape(steps, batch_size)


def simulate(
    config: SimConfig,
    seed: int,
    allocator: Allocator,
    budget: int,
    *,
    on_step: Callable[[metrics.StepMetrics], None] | None = None,
) -> SimResult:
    """Run `config.steps` steps of GRPO dynamics with allocations from `allocator`.

    Args:
        config: Dataset size, batch size, steps and learning rates.
        seed: Fixes the dataset, the batch order and the outcome draws.
        allocator: Answers allocations and takes outcome reports (the service).
        budget: Rollouts per step.
        on_step: Called with each step's metrics (progress bars).

    Returns:
        The per-step metrics and the dataset's difficulty at start and end.

    """
    data_rng, batch_rng, outcome_rng = seeded_generators(seed)
    prompts = PromptSet.generate(config.prompts, config.topics, data_rng, config.difficulty)
    model = SkillModel(prompts, config.rates)
    batches = batch_order(config.prompts, config.batch_size, config.steps, batch_rng)
    ids = prompts.prompt_ids
    initial = metrics.difficulty_counts(model.success_rates())
    history: list[metrics.StepMetrics] = []
    for step, index in enumerate(batches):
        batch_ids = [ids[i] for i in index]
        allocation = allocator.allocate(step, batch_ids, budget)
        trials = np.asarray(allocation.trials, dtype=np.int64)
        if trials.shape != index.shape:
            raise ValueError(f"allocation has {trials.shape} entries for {index.shape} prompts")
        rates = model.success_rates(index)
        successes = outcome_rng.binomial(trials, rates).astype(np.int64)
        model.grpo_step(index, successes, trials)
        allocator.report(step, batch_ids, successes, trials)
        effective, all_success, all_failure = metrics.batch_shares(successes, trials)
        mean_success, mastered, never_solved = metrics.dataset_state(model.success_rates())
        rollouts_by_band, prompts_by_band = metrics.by_difficulty(rates, trials)
        record = metrics.StepMetrics(
            step=step,
            budget=budget,
            rollouts=int(trials.sum()),
            effective_ratio=effective,
            all_success_share=all_success,
            all_failure_share=all_failure,
            mean_success=mean_success,
            mastered_share=mastered,
            never_solved_share=never_solved,
            max_group=int(trials.max()),
            budget_histogram=metrics.budget_histogram(trials),
            rollouts_by_difficulty=rollouts_by_band,
            prompts_by_difficulty=prompts_by_band,
            degraded=allocation.degraded,
        )
        history.append(record)
        if on_step is not None:
            on_step(record)
    return SimResult(
        seed=seed,
        budget=budget,
        steps=history,
        initial_difficulty=initial,
        final_difficulty=metrics.difficulty_counts(model.success_rates()),
    )
