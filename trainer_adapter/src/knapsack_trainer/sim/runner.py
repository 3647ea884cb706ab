"""The simulation loop: one run of GRPO dynamics against a step policy.

The loop does what a trainer does each step: take the next batch, decide the
rollouts (a `StepPolicy`: most strategies ask the service through an
`Allocator`), roll out (here: draw Binomial(n_i, p_i) successes), update the
policy, and report the outcomes so the next allocation is better informed.
Strategies that change *which* prompts are rolled out (DAPO's dynamic
sampling, MoPPS's prompt selection, see `sim.policies`) draw extra prompts
through `Rollouts`; every rollout they spend is counted, and a policy that
promises to spend the budget (`spends_budget`) is held to it every step, so
strategies compare at equal rollouts spent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from knapsack_trainer.sim import metrics
from knapsack_trainer.sim.dataset import DifficultyMix, PromptSet
from knapsack_trainer.sim.dynamics import LearningRates, SkillModel, check_returns


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
class Groups:
    """Rollout groups: prompt index, successes and rollouts of each group."""

    index: np.ndarray  # (groups,) int64
    successes: np.ndarray  # (groups,) int64
    trials: np.ndarray  # (groups,) int64

    @classmethod
    def empty(cls) -> Groups:
        """No groups (a step without an update)."""
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none)

    @classmethod
    def concat(cls, parts: Sequence[Groups]) -> Groups:
        """The groups of `parts`, in order."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([g.index for g in parts]),
            np.concatenate([g.successes for g in parts]),
            np.concatenate([g.trials for g in parts]),
        )

    def take(self, mask_or_index: np.ndarray) -> Groups:
        """The selected groups (boolean mask or positions)."""
        return Groups(
            self.index[mask_or_index], self.successes[mask_or_index], self.trials[mask_or_index]
        )

    def __len__(self) -> int:
        return len(self.index)


class CandidateStream:
    """Fresh prompts for policies that draw beyond the step's batch (MoPPS's candidates).

    Epochs of shuffled prompts from a stream of their own, so drawing candidates
    never changes the batches or outcomes of the other strategies of that seed.
    """

    def __init__(self, prompts: int, rng: np.random.Generator) -> None:
        self.prompts = prompts
        self.rng = rng
        self.pending = np.zeros(0, dtype=np.int64)

    def take(self, count: int) -> np.ndarray:
        """`count` distinct prompt indices (at most the dataset's size)."""
        count = min(count, self.prompts)
        while len(self.pending) < count:
            self.pending = np.concatenate([self.pending, self.rng.permutation(self.prompts)])
        chosen: list[int] = []
        seen: set[int] = set()
        rest: list[int] = []
        for i in self.pending.tolist():
            if len(chosen) < count and i not in seen:
                chosen.append(i)
                seen.add(i)
            else:
                rest.append(i)
        self.pending = np.asarray(rest, dtype=np.int64)
        return np.asarray(chosen, dtype=np.int64)


class Rollouts:
    """What a step policy may do during one step: roll out groups, draw candidates.

    Every group rolled out is recorded (with the true success rate when rolled,
    for the metrics only): the step's rollouts spent are the sum over all of them,
    whether or not the policy then learns from them.
    """

    def __init__(
        self, model: SkillModel, outcome_rng: np.random.Generator, candidates: CandidateStream
    ) -> None:
        self.model = model
        self.outcome_rng = outcome_rng
        self.candidate_stream = candidates
        self.played: list[Groups] = []
        self.rates: list[np.ndarray] = []

    def roll(self, index: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """Draw Binomial(trials_i, p_i) successes on the current model; returns them."""
        index = np.asarray(index, dtype=np.int64)
        trials = np.asarray(trials, dtype=np.int64)
        if trials.shape != index.shape:
            raise ValueError(f"{trials.shape} group sizes for {index.shape} prompts")
        if np.any(trials < 0):
            raise ValueError("group sizes must be >= 0")
        rates = self.model.success_rates(index)
        successes = self.outcome_rng.binomial(trials, rates).astype(np.int64)
        self.played.append(Groups(index, successes, trials))
        self.rates.append(rates)
        return successes

    def candidates(self, count: int) -> np.ndarray:
        """`count` fresh prompts drawn beyond the step's batch (no rollouts spent)."""
        return self.candidate_stream.take(count)

    def spent(self) -> int:
        """Rollouts spent so far this step."""
        return int(sum(int(g.trials.sum()) for g in self.played))


@dataclass(frozen=True)
class StepPlay:
    """What a policy learnt from at one step: the groups of the GRPO update."""

    update: Groups
    degraded: bool = False


class StepPolicy(Protocol):
    """One strategy's step: which prompts get how many rollouts, and what is learnt."""

    #: True when the policy spends exactly the budget every step (checked by `simulate`).
    spends_budget: bool

    def play(
        self,
        step: int,
        batch: np.ndarray,
        prompt_ids: Sequence[str],
        budget: int,
        rollouts: Rollouts,
    ) -> StepPlay:
        """Spend the step's rollouts through `rollouts`; return the groups to learn from."""
        ...


class AllocatorPolicy:
    """The plain trainer loop: the allocator sizes the batch's groups, all are learnt from."""

    def __init__(self, allocator: Allocator, *, spends_budget: bool = True) -> None:
        self.allocator = allocator
        self.spends_budget = spends_budget

    def play(
        self,
        step: int,
        batch: np.ndarray,
        prompt_ids: Sequence[str],
        budget: int,
        rollouts: Rollouts,
    ) -> StepPlay:
        """Ask the allocator, roll out every group, report the outcomes; learn from all."""
        batch_ids = [prompt_ids[i] for i in batch]
        allocation = self.allocator.allocate(step, batch_ids, budget)
        trials = np.asarray(allocation.trials, dtype=np.int64)
        if trials.shape != batch.shape:
            raise ValueError(f"allocation has {trials.shape} entries for {batch.shape} prompts")
        successes = rollouts.roll(batch, trials)
        self.allocator.report(step, batch_ids, successes, trials)
        return StepPlay(Groups(batch, successes, trials), degraded=allocation.degraded)


class UnequalSpendError(RuntimeError):
    """A policy that promised to spend the budget spent another amount."""


@dataclass(frozen=True)
class SimConfig:
    """Size and learning speed of a simulated run.

    The defaults follow the paper's setting (256 prompts per batch, 8 rollouts
    per prompt on average, so a budget of 2,048) on a dataset of 2,560 prompts
    (ten steps per epoch), with rates that make 100 to 200 steps show the
    early, middle and late phases of Fig. 2. `heldout` prompts of the same
    topics and difficulty mix are never trained on: their success measures what
    carries over (general and topic skill), not what is memorised. `returns`
    is the dynamics' returns option (`dynamics.RETURNS`).
    """

    prompts: int = 2560
    topics: int = 32
    batch_size: int = 256
    rollouts_per_prompt: int = 8
    steps: int = 150
    heldout: int = 512
    returns: str = "linear"
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
        if self.heldout < 1:
            raise ValueError("heldout must be positive")
        check_returns(self.returns)


@dataclass
class SimResult:
    """Everything one run produced."""

    seed: int
    budget: int
    steps: list[metrics.StepMetrics]
    initial_difficulty: dict[str, int]
    final_difficulty: dict[str, int]
    #: Prompts per (band at the start, band after the last step), Fig. 7 of the paper.
    band_transitions: list[list[int]] = field(default_factory=list)
    initial_heldout_success: float = float("nan")
    rollouts_spent: int = 0


#: Streams of `seeded_generators`, by name.
STREAMS = ("dataset", "batches", "outcomes", "heldout", "candidates")


def seeded_generators(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent streams for the dataset, batches, outcomes, held-out set and candidates.

    Separate streams keep the dataset and the batches identical across
    strategies run with the same seed, whatever the allocations consume.
    """
    return tuple(np.random.default_rng([seed, stream]) for stream in range(len(STREAMS)))


def batch_order(prompts: int, batch_size: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """(steps, batch_size) prompt indices: epochs of shuffled prompts, cut in batches."""
    needed = steps * batch_size
    epochs = -(-needed // prompts)
    order = np.concatenate([rng.permutation(prompts) for _ in range(epochs)])
    return order[:needed].reshape(steps, batch_size)


def as_policy(strategy: StepPolicy | Allocator) -> StepPolicy:
    """A step policy as is; an allocator as the plain trainer loop around it."""
    if hasattr(strategy, "play"):
        return strategy  # type: ignore[return-value]
    return AllocatorPolicy(strategy)  # type: ignore[arg-type]


def simulate(
    config: SimConfig,
    seed: int,
    strategy: StepPolicy | Allocator,
    budget: int,
    *,
    on_step: Callable[[metrics.StepMetrics], None] | None = None,
) -> SimResult:
    """Run `config.steps` steps of GRPO dynamics under `strategy`.

    Args:
        config: Dataset size, batch size, steps, learning rates and returns.
        seed: Fixes the dataset, the batch order and the outcome draws.
        strategy: A `StepPolicy`, or an `Allocator` (the service) for the plain loop.
        budget: Rollouts per step.
        on_step: Called with each step's metrics (progress bars).

    Returns:
        The per-step metrics and the dataset's difficulty at start and end.

    Raises:
        UnequalSpendError: a policy with `spends_budget` spent another amount.

    """
    data_rng, batch_rng, outcome_rng, heldout_rng, candidate_rng = seeded_generators(seed)
    prompts = PromptSet.generate(config.prompts, config.topics, data_rng, config.difficulty)
    heldout = PromptSet.generate(
        config.heldout, config.topics, heldout_rng, config.difficulty, prefix="held"
    )
    model = SkillModel(prompts, config.rates, config.returns)
    policy = as_policy(strategy)
    batches = batch_order(config.prompts, config.batch_size, config.steps, batch_rng)
    candidates = CandidateStream(config.prompts, candidate_rng)
    ids = prompts.prompt_ids
    start_rates = model.success_rates()
    start_heldout = float(model.transfer_rates(heldout).mean())
    history: list[metrics.StepMetrics] = []
    for step, batch in enumerate(batches):
        rollouts = Rollouts(model, outcome_rng, candidates)
        played = policy.play(step, batch, ids, budget, rollouts)
        spent = rollouts.spent()
        if policy.spends_budget and spent != budget:
            raise UnequalSpendError(f"step {step}: spent {spent} rollouts of a budget of {budget}")
        update = played.update
        model.grpo_step(update.index, update.successes, update.trials)
        history.append(
            step_metrics(step, budget, rollouts, len(update), played.degraded, model, heldout)
        )
        if on_step is not None:
            on_step(history[-1])
    end_rates = model.success_rates()
    return SimResult(
        seed=seed,
        budget=budget,
        steps=history,
        initial_difficulty=metrics.difficulty_counts(start_rates),
        final_difficulty=metrics.difficulty_counts(end_rates),
        band_transitions=metrics.band_transitions(start_rates, end_rates),
        initial_heldout_success=start_heldout,
        rollouts_spent=sum(m.rollouts for m in history),
    )


def step_metrics(
    step: int,
    budget: int,
    rollouts: Rollouts,
    updated_groups: int,
    degraded: bool,
    model: SkillModel,
    heldout: PromptSet,
) -> metrics.StepMetrics:
    """One step's record: what was spent (every group rolled) and the model after it."""
    played = Groups.concat(rollouts.played)
    rates = np.concatenate(rollouts.rates) if rollouts.rates else np.zeros(0)
    effective, all_success, all_failure = metrics.batch_shares(played.successes, played.trials)
    mean_success, mastered, never_solved = metrics.dataset_state(model.success_rates())
    rollouts_by_band, prompts_by_band = metrics.by_difficulty(rates, played.trials)
    return metrics.StepMetrics(
        step=step,
        budget=budget,
        rollouts=int(played.trials.sum()),
        effective_ratio=effective,
        all_success_share=all_success,
        all_failure_share=all_failure,
        mean_success=mean_success,
        mastered_share=mastered,
        never_solved_share=never_solved,
        max_group=int(played.trials.max()) if len(played) else 0,
        heldout_success=float(model.transfer_rates(heldout).mean()),
        updated_groups=updated_groups,
        budget_histogram=metrics.budget_histogram(played.trials),
        rollouts_by_difficulty=rollouts_by_band,
        prompts_by_difficulty=prompts_by_band,
        degraded=degraded,
    )
