"""TRL's `GRPOTrainer` with per-prompt rollout counts from a knapsack-rl service.

Tested with trl 1.16.0 (torch 2.13 CPU, transformers 5.19, accelerate 1.15), one
process and two under `torchrun`; the three methods overridden here have kept their
signatures from trl 0.19 to 1.16. Install with the `trl` extra.

Where the per-prompt n goes in TRL, and why there:

- **The sampler.** TRL's `RepeatSampler` yields every prompt `num_generations`
  times before `_generate_and_score_completions` ever runs, so n must be decided
  in the sampler. `KnapsackRepeatSampler` draws the same chunks of
  `generation_batch_size // num_generations` prompts as `RepeatSampler` (same
  permutation, same seed), asks the service for n_i with sum n_i =
  `generation_batch_size` (so every batch shape TRL checks is unchanged, and
  `num_generations` becomes the mean group size), and yields prompt i n_i times.
  `GRPOConfig` still checks that `generation_batch_size` is divisible by
  `num_generations` (and that `num_generations >= 2`): that is what makes
  `generation_batch_size // num_generations` whole prompts per step, so keep it.
- **Every rank asks.** Each process iterates the whole global sampler, so each
  asks for every step; the service keeps one plan per step and serves it to all of
  them byte for byte (API.md, "One plan per step"). Before a step is scored, the
  ranks compare their plans' digests and stop with `PlanMismatch` if they differ
  (possible only when some ranks got a degraded answer during a store outage; a
  degraded answer is retried first), rather than train on corrupted groups.
- **Advantages over uneven groups.** TRL reshapes rewards with
  `view(-1, num_generations)`, which assumes equal groups: the advantages are
  recomputed by prompt from the gathered rewards (`grouping.py`), and
  `frac_reward_zero_std` becomes the share of groups (not of rollouts) with
  all-equal rewards.
- **Reports.** The main process reports each prompt's rewards (the weighted sum
  of the reward functions) once per step; the run's `success_threshold` turns them
  into outcomes.
- **One step of lag.** accelerate's data loader fetches one batch ahead, so step
  k+1 is planned before step k is scored and reported: a plan sees the outcomes up
  to step k-1. With the paper's estimator (a window over many earlier visits) that
  costs little; it is the same lag for every rank.

Not supported: an `IterableDataset` (its chunks are not indexable, so no sampler
can repeat them by n; refused at construction), and `num_generations_eval` grouping
in evaluation (evaluation keeps TRL's equal groups).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import IterableDataset
from torch.utils.data import Sampler
from trl import GRPOTrainer

from knapsack_client import KnapsackClient, ServiceUnavailable
from knapsack_trainer.integrations.grouping import (
    group_labels,
    group_mean_std,
    grouped_advantages,
    plan_digest,
)

logger = logging.getLogger("knapsack_trainer.integrations.trl")

#: TRL versions this integration was run with (bench/trl_tiny.py, tests/integrations).
TESTED_TRL_VERSIONS = ("1.16.0",)


class PlanMismatch(RuntimeError):
    """The ranks hold different plans for one step: their groups would not line up."""


#: Scored steps each trainer keeps for inspection (`KnapsackGRPOTrainer.knapsack_steps`).
HISTORY_STEPS = 256


@dataclass(frozen=True)
class StepPlan:
    """One generation batch as the service planned it.

    Attributes:
        step: The plan's step (the sampler's chunk counter, from 0).
        indices: Dataset index of each prompt, in order.
        prompt_ids: The ids sent to the service, in the same order.
        group_sizes: n_i per prompt (sum = `generation_batch_size`).
        degraded: The service answered with a uniform fallback.
        digest: `grouping.plan_digest` of the plan, equal on every rank.

    """

    step: int
    indices: tuple[int, ...]
    prompt_ids: tuple[str, ...]
    group_sizes: tuple[int, ...]
    degraded: bool
    digest: str

    def expanded(self) -> list[int]:
        """Dataset index of every rollout, prompt i repeated n_i times (sampler order)."""
        return [
            index for index, n in zip(self.indices, self.group_sizes, strict=True) for _ in range(n)
        ]


@dataclass(frozen=True)
class ScoredStep:
    """A step as it was trained: its plan, the whole batch's rewards and advantages."""

    plan: StepPlan
    rewards: tuple[float, ...]
    advantages: tuple[float, ...]


class ServicePlanner:
    """Asks the service for a step's group sizes; a degraded answer is retried first."""

    def __init__(
        self,
        client: KnapsackClient,
        run_id: str,
        budget: int,
        *,
        degraded_retries: int = 3,
        retry_seconds: float = 1.0,
    ) -> None:
        """Plan steps of `budget` rollouts for run `run_id`."""
        self.client = client
        self.run_id = run_id
        self.budget = int(budget)
        self.degraded_retries = degraded_retries
        self.retry_seconds = retry_seconds

    def __call__(self, step: int, indices: Sequence[int], prompt_ids: Sequence[str]) -> StepPlan:
        """The plan of one step (the same on every rank that asks)."""
        for attempt in range(self.degraded_retries + 1):
            answer = self.client.allocate(self.run_id, step, list(prompt_ids), budget=self.budget)
            if not answer.degraded or attempt == self.degraded_retries:
                break
            logger.warning(
                "degraded allocation for step %d (%s); asking again", step, answer.reason
            )
            time.sleep(self.retry_seconds)
        sizes = tuple(int(item.n) for item in answer.allocations)
        if len(sizes) != len(prompt_ids) or sum(sizes) != self.budget:
            raise ValueError(
                f"step {step}: the service gave {len(sizes)} sizes summing to {sum(sizes)} for "
                f"{len(prompt_ids)} prompts and a budget of {self.budget}"
            )
        return StepPlan(
            step=step,
            indices=tuple(int(i) for i in indices),
            prompt_ids=tuple(prompt_ids),
            group_sizes=sizes,
            degraded=bool(answer.degraded),
            digest=plan_digest(step, prompt_ids, sizes),
        )


class KnapsackRepeatSampler(Sampler[int]):
    """`RepeatSampler`'s chunks, each prompt repeated by its planned n instead of a constant.

    Every chunk of `prompts_per_step` prompts (a permutation of the dataset, cut as
    `RepeatSampler` cuts it; an incomplete last chunk is dropped) is one step: its
    plan is asked for when the chunk is reached, kept in `plans` for the trainer, and
    its rollouts (`sum n = budget`) are yielded `repeat_count` times (TRL reuses a
    generation batch for `steps_per_generation * num_iterations` optimiser steps).
    """

    def __init__(
        self,
        data_source: Sized,
        prompt_ids: Sequence[str],
        planner: Callable[[int, Sequence[int], Sequence[str]], StepPlan],
        *,
        prompts_per_step: int,
        budget: int,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
    ) -> None:
        """See the class docstring; `prompt_ids[i]` names dataset row i for the service."""
        if len(prompt_ids) != len(data_source):
            raise ValueError(f"{len(prompt_ids)} prompt ids for {len(data_source)} rows")
        self.data_source = data_source
        self.prompt_ids = list(prompt_ids)
        self.planner = planner
        self.prompts_per_step = prompts_per_step
        self.budget = budget
        self.repeat_count = repeat_count
        self.shuffle = shuffle
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)
        self.next_step = 0
        self.plans: deque[StepPlan] = deque()

    def __iter__(self) -> Iterator[int]:
        size = len(self.data_source)
        if self.shuffle:
            order = torch.randperm(size, generator=self.generator).tolist()
        else:
            order = list(range(size))
        chunk_size = self.prompts_per_step
        for start in range(0, size - chunk_size + 1, chunk_size):
            chunk = order[start : start + chunk_size]
            plan = self.planner(self.next_step, chunk, [self.prompt_ids[i] for i in chunk])
            self.next_step += 1
            self.plans.append(plan)
            rollouts = plan.expanded()
            for _ in range(self.repeat_count):
                yield from rollouts

    def __len__(self) -> int:
        return (len(self.data_source) // self.prompts_per_step) * self.budget * self.repeat_count


def default_run_settings(num_generations: int, generation_batch_size: int) -> dict[str, Any]:
    """Run settings under which TRL's shapes hold and the first steps equal plain TRL.

    An unseen prompt gets `num_generations` (so a step of unseen prompts is exactly
    TRL's uniform plan), no group is smaller than 2 (a group of one has no
    advantage), and none is larger than the whole generation batch.
    """
    return {
        "default_n": num_generations,
        "min_n": 2,
        "max_n": min(generation_batch_size, 1024),
    }


class KnapsackGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` whose groups get their size from a knapsack-rl service.

    Takes GRPOTrainer's arguments (`train_dataset` by keyword) plus:

    Args:
        knapsack_client: A `KnapsackClient` (remote, or `knapsack_trainer.embedded`).
        run_id: The service's run; created or updated with `run_settings`.
        run_settings: Settings for the run, over `default_run_settings`.
        prompt_id_column: Dataset column naming each prompt for the service; without
            it, the row index (as text) is the id.
        report_outcomes: Send each step's rewards to the service (main process).
        worker: The reporter's name in the report id.

    """

    def __init__(
        self,
        *args: Any,
        knapsack_client: KnapsackClient,
        run_id: str,
        run_settings: Mapping[str, Any] | None = None,
        prompt_id_column: str = "prompt_id",
        report_outcomes: bool = True,
        worker: str = "trl",
        **kwargs: Any,
    ) -> None:
        dataset = kwargs.get("train_dataset", args[3] if len(args) > 3 else None)
        if isinstance(dataset, IterableDataset):
            raise TypeError(
                "KnapsackGRPOTrainer needs a map-style datasets.Dataset: an IterableDataset "
                "cannot be indexed, so no sampler can repeat its prompts by a per-prompt n "
                "(use dataset.to_list() / Dataset.from_generator, or plain GRPOTrainer)"
            )
        self.knapsack_client = knapsack_client
        self.knapsack_run_id = run_id
        self.prompt_id_column = prompt_id_column
        self.report_outcomes = report_outcomes
        self.knapsack_worker = worker
        #: The last `HISTORY_STEPS` scored steps, oldest first (for logs and benches).
        self.knapsack_steps: deque[ScoredStep] = deque(maxlen=HISTORY_STEPS)
        self._knapsack_sampler: KnapsackRepeatSampler | None = None
        self._knapsack_rewards: torch.Tensor | None = None
        super().__init__(*args, **kwargs)
        self._warn_untested_version()
        settings = default_run_settings(self.num_generations, self.args.generation_batch_size)
        settings.update(run_settings or {})
        knapsack_client.ensure_run(run_id, settings)

    @staticmethod
    def _warn_untested_version() -> None:
        import trl

        if trl.__version__ not in TESTED_TRL_VERSIONS:
            logger.warning(
                "trl %s is not among the versions tested with KnapsackGRPOTrainer: %s",
                trl.__version__,
                ", ".join(TESTED_TRL_VERSIONS),
            )

    # ------------------------------------------------------------------ sampler

    def _prompt_ids(self, dataset: Any) -> list[str]:
        names = getattr(dataset, "column_names", None) or []
        if self.prompt_id_column in names:
            return [str(value) for value in dataset[self.prompt_id_column]]
        return [str(index) for index in range(len(dataset))]

    def _get_train_sampler(self, dataset: Any = None) -> Sampler:
        dataset = self.train_dataset if dataset is None else dataset
        budget = self.args.generation_batch_size
        planner = ServicePlanner(self.knapsack_client, self.knapsack_run_id, budget)
        self._knapsack_sampler = KnapsackRepeatSampler(
            dataset,
            self._prompt_ids(self.train_dataset),
            planner,
            prompts_per_step=budget // self.num_generations,
            budget=budget,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )
        return self._knapsack_sampler

    def _take_plan(self, inputs: list[dict[str, Any]]) -> StepPlan:
        """The oldest planned step whose rollouts are `inputs` (skipped ones are dropped).

        Plans of chunks the trainer skipped (resuming from a checkpoint) are passed
        over; the check of the prompts also catches a data loader that split the
        generation batch differently from the sampler's order.
        """
        sampler = self._knapsack_sampler
        if sampler is None:
            raise RuntimeError("no KnapsackRepeatSampler: the training data loader was not built")
        local = len(inputs)
        start = self.accelerator.process_index * local
        prompts = [row.get("prompt") for row in inputs]
        while sampler.plans:
            plan = sampler.plans.popleft()
            mine = plan.expanded()[start : start + local]
            if len(mine) == local and [self.train_dataset[i]["prompt"] for i in mine] == prompts:
                return plan
        raise RuntimeError("the generation batch matches none of the sampler's plans")

    # ------------------------------------------------------------------ scoring

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._knapsack_rewards = rewards  # gathered over processes: (generation batch, funcs)
        return rewards

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        plan = self._take_plan(inputs)
        digests = gather_object([plan.digest])
        if len(set(digests)) > 1:
            raise PlanMismatch(
                f"step {plan.step}: the ranks hold different plans {digests} (a degraded "
                "answer on some ranks while the store was unreachable); refusing to train "
                "on groups that do not line up"
            )
        output = super()._generate_and_score_completions(inputs)
        assert self._knapsack_rewards is not None
        advantages, zero_std, rewards = self._grouped(plan, self._knapsack_rewards)
        local = len(inputs)
        start = self.accelerator.process_index * local
        output["advantages"] = advantages[start : start + local]
        metrics = self._metrics["train"]
        sizes = torch.tensor(plan.group_sizes)
        metrics["frac_reward_zero_std"][-1] = zero_std[sizes > 0].float().mean().item()
        metrics["knapsack/group_size_min"].append(float(sizes.min()))
        metrics["knapsack/group_size_max"].append(float(sizes.max()))
        metrics["knapsack/degraded"].append(float(plan.degraded))
        self._logs["advantages"].extend(advantages.tolist())  # replaces TRL's (maxlen = batch)
        if self.report_outcomes and self.accelerator.is_main_process:
            self._report(plan, rewards)
        self.knapsack_steps.append(
            ScoredStep(plan, tuple(rewards.tolist()), tuple(advantages.tolist()))
        )
        return output

    def _grouped(
        self, plan: StepPlan, rewards_per_func: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(advantages, zero-std per group, weighted reward) of the whole generation batch."""
        device = rewards_per_func.device
        labels = group_labels(plan.group_sizes, device)
        groups = len(plan.group_sizes)
        if labels.numel() != rewards_per_func.shape[0]:
            raise RuntimeError(
                f"step {plan.step}: {rewards_per_func.shape[0]} rewards for a plan of "
                f"{labels.numel()} rollouts"
            )
        weights = self.reward_weights.to(device).unsqueeze(0)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[unscorable] = torch.nan
        if self.multi_objective_aggregation == "normalize_then_sum":
            normalised = torch.empty_like(rewards_per_func)
            for k in range(rewards_per_func.shape[1]):
                mean, std, _ = group_mean_std(rewards_per_func[:, k], labels, groups)
                normalised[:, k] = (rewards_per_func[:, k] - mean[labels]) / (std[labels] + 1e-4)
            summed = (normalised * weights).nansum(dim=1)
            summed[unscorable] = torch.nan
            advantages, _ = grouped_advantages(summed, torch.zeros_like(labels), 1, "group")
            _, zero_std = grouped_advantages(rewards, labels, groups, "none")
        else:
            advantages, zero_std = grouped_advantages(rewards, labels, groups, self.scale_rewards)
        return advantages, zero_std, rewards

    def _report(self, plan: StepPlan, rewards: torch.Tensor) -> None:
        """Each prompt's rewards (NaN left out) to the service, once per step."""
        results = []
        position = 0
        values = rewards.tolist()
        for prompt_id, n in zip(plan.prompt_ids, plan.group_sizes, strict=True):
            group = [value for value in values[position : position + n] if value == value]
            position += n
            if group:
                results.append({"prompt_id": prompt_id, "rewards": group})
        if not results:
            return
        try:
            self.knapsack_client.report(
                self.knapsack_run_id, plan.step, results, worker=self.knapsack_worker
            )
        except ServiceUnavailable as exc:  # journaled by the client if it has a journal
            logger.warning("step %d's report is late: %s", plan.step, exc)


__all__ = [
    "TESTED_TRL_VERSIONS",
    "KnapsackGRPOTrainer",
    "KnapsackRepeatSampler",
    "PlanMismatch",
    "ScoredStep",
    "ServicePlanner",
    "StepPlan",
    "default_run_settings",
]
