"""The GRPO loop: allocate, generate n_i rollouts per prompt, reward, report, learn, sync.

One step, on every rank (a single process is rank 0 of 1):

1. draw the step's prompts (the same on every rank: same seed, same sampler);
2. rank 0 asks the service for the allocation (n_i per prompt, balanced into one
   shard per rank) and broadcasts it, so the service counts one allocation per step;
3. generate this rank's shard in one engine call and score it;
4. exchange rewards so every rank sees whole groups, and compute group-relative
   advantages (a group may be split across ranks);
5. report this rank's outcomes (idempotent report id from run, step and rank);
6. the policy loss (PPO-clipped by default) against the generation-time log-probs,
   gradients summed over ranks, one optimiser step (`policy_update.py`);
7. push the new weights into the generation engine; log; checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from knapsack_client import KnapsackClient, KnapsackError, PromptResult
from knapsack_client.rules import (
    DEFAULT_SUCCESS_THRESHOLD,
    assign_whole_groups,
    split_consecutive,
)
from knapsack_trainer.worker import core_algos
from knapsack_trainer.worker.checkpoint import (
    TrainerState,
    capture_rng_state,
    latest_checkpoint,
    load_trainer_state,
    restore_rng_state,
    save_checkpoint,
)
from knapsack_trainer.worker.config import TrainConfig
from knapsack_trainer.worker.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_sums,
    barrier,
    broadcast_object,
    broadcast_parameters,
)
from knapsack_trainer.worker.generation import (
    GenerationBackend,
    GenerationRequest,
    TransformersBackend,
    VllmBackend,
    vllm_available,
)
from knapsack_trainer.worker.metrics import MetricsLogger
from knapsack_trainer.worker.policy_update import PolicyUpdate, Rollout
from knapsack_trainer.worker.sampler import PromptSampler
from knapsack_trainer.worker.tasks import Task, build_task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepAllocation:
    """Rank 0's allocation, as broadcast to every rank.

    Attributes:
        counts: Rollouts per prompt of the step, in the step's prompt order.
        shards: Per rank, `(prompt index, rollouts)` pairs.
        degraded: True when the client fell back to a uniform allocation.
        strategy: The strategy the service used.

    """

    counts: list[int]
    shards: list[list[tuple[int, int]]]
    degraded: bool
    strategy: str


def build_backend(config: TrainConfig, model: Any, tokenizer: Any, policy_path: str) -> Any:
    """The generation backend the config asks for (`auto`: vLLM when installed)."""
    name = config.backend
    if name == "auto":
        name = "vllm" if vllm_available() else "transformers"
    if name == "transformers":
        return TransformersBackend(model, tokenizer)
    return VllmBackend(
        policy_path,
        config.resolved_tokenizer_path,
        dtype=config.generation_dtype,
        max_model_len=config.max_model_len,
        seed=config.seed,
        engine_kwargs=config.vllm_kwargs,
    )


class GRPOTrainer:
    """A GRPO worker that allocates rollouts through a knapsack-rl service.

    Args:
        config: The run's configuration.
        client: A client of the service (see `service.connect_service`).
        context: This process's place in the data-parallel job.

    """

    def __init__(
        self, config: TrainConfig, client: KnapsackClient, context: DistContext | None = None
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.client = client
        self.context = context or DistContext()
        self.output_dir = Path(config.output_dir)
        self.task: Task = build_task(config.task, **config.task_options)
        self.tokenizer = AutoTokenizer.from_pretrained(config.resolved_tokenizer_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.success_threshold = float(
            config.run_settings.get("success_threshold", DEFAULT_SUCCESS_THRESHOLD)
        )

        checkpoint = latest_checkpoint(self.output_dir) if config.resume else None
        self.resumed_from = checkpoint
        policy_path = str(checkpoint) if checkpoint is not None else config.model_path
        dtype = getattr(torch, config.train_dtype)
        torch.manual_seed(config.seed)
        self.model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=dtype)
        self.model.to(self.context.device)
        self.model.train()
        broadcast_parameters(self.context, self.model)
        self.reference = None
        if config.kl_coef > 0:
            # The KL anchor is the initial model, also after a resume.
            self.reference = AutoModelForCausalLM.from_pretrained(config.model_path, dtype=dtype)
            self.reference.to(self.context.device).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.update = PolicyUpdate(
            self.model,
            self.optimizer,
            config,
            self.context,
            self.tokenizer.pad_token_id,
            reference=self.reference,
        )
        self.sampler = PromptSampler(self.task.prompt_ids, seed=config.seed)
        self.start_step = 0
        rng_state = None
        if checkpoint is not None:
            state = load_trainer_state(checkpoint)
            if state.run_id != config.run_id:
                raise ValueError(
                    f"checkpoint {checkpoint} belongs to run {state.run_id!r}, "
                    f"not {config.run_id!r}"
                )
            self.optimizer.load_state_dict(state.optimizer)
            self.sampler.load_state_dict(state.sampler)
            self.start_step = state.step
            rng_state = state.rng
        self.step = self.start_step

        # vLLM seeds the global RNG when its engine starts: seed ours afterwards.
        self.backend: GenerationBackend = build_backend(
            config, self.model, self.tokenizer, policy_path
        )
        if rng_state is not None and not self.context.enabled:
            restore_rng_state(rng_state)
        else:
            torch.manual_seed(config.seed * 7919 + self.context.rank + self.start_step)
        self._prompt_tokens: dict[str, list[int]] = {}
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ pieces of a step

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt text: plain, or as one user turn of the chat template."""
        if self.config.chat_template:
            messages = [{"role": "user", "content": text}]
            encoded = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=True
            )
            return list(encoded["input_ids"])
        return list(self.tokenizer(text)["input_ids"])

    def prompt_tokens(self, prompt_id: str) -> list[int]:
        """Token ids of a training prompt (cached)."""
        if prompt_id not in self._prompt_tokens:
            self._prompt_tokens[prompt_id] = self.encode(self.task.problem(prompt_id).prompt)
        return self._prompt_tokens[prompt_id]

    def allocate(self, step: int, prompt_ids: list[str]) -> StepAllocation:
        """Rank 0 asks the service; every rank gets the same answer."""
        allocation: StepAllocation | None = None
        if self.context.is_main:
            answer = self.client.allocate(
                self.config.run_id,
                step,
                prompt_ids,
                budget=self.config.budget,
                workers=self.context.world_size,
                split_groups=self.config.split_groups,
                strategy=self.config.strategy,
            )
            by_id = {item.prompt_id: item.n for item in answer.allocations}
            counts = [int(by_id.get(prompt_id, 0)) for prompt_id in prompt_ids]
            if answer.shards is not None and len(answer.shards) == self.context.world_size:
                shards = [[(int(i), int(n)) for i, n in shard] for shard in answer.shards]
            else:
                # No shards from the service (one worker, or the client's offline
                # fallback): cut here by the client's rule for the same setting.
                split = split_consecutive if self.config.split_groups else assign_whole_groups
                shards = split(counts, self.context.world_size)
            allocation = StepAllocation(counts, shards, answer.degraded, answer.strategy)
        return broadcast_object(self.context, allocation)

    def generate(
        self, step: int, prompt_ids: list[str], shard: list[tuple[int, int]]
    ) -> list[Rollout]:
        """Sample this rank's shard in one engine call and score every completion."""
        request = GenerationRequest(
            prompt_token_ids=[self.prompt_tokens(prompt_ids[index]) for index, _ in shard],
            counts=[count for _, count in shard],
            max_new_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            seed=(self.config.seed * 1_000_003 + step) * 4096 + self.context.rank,
        )
        groups = self.backend.generate(request) if shard else []
        rollouts = []
        for (index, _), completions in zip(shard, groups, strict=True):
            for completion in completions:
                reward = self.task.score(prompt_ids[index], completion.text)
                rollouts.append(Rollout(index, completion, reward))
        return rollouts

    def report(self, step: int, prompt_ids: list[str], rollouts: list[Rollout]) -> None:
        """Report this rank's outcomes; a failed delivery stays in the client's journal."""
        grouped: dict[int, list[Rollout]] = {}
        for rollout in rollouts:
            grouped.setdefault(rollout.prompt_index, []).append(rollout)
        results = []
        for index, group in sorted(grouped.items()):
            rewards = [rollout.reward for rollout in group]
            tokens = sum(len(r.completion.token_ids) for r in group) / len(group)
            if all(reward in (0.0, 1.0) for reward in rewards):
                result = PromptResult(
                    prompt_id=prompt_ids[index],
                    successes=int(sum(rewards)),
                    trials=len(rewards),
                    mean_response_tokens=tokens,
                )
            else:  # graded rewards: the service applies the run's success threshold
                result = PromptResult(
                    prompt_id=prompt_ids[index], rewards=rewards, mean_response_tokens=tokens
                )
            results.append(result)
        if not results:
            return
        try:
            self.client.report(self.config.run_id, step, results, worker=str(self.context.rank))
        except KnapsackError as error:
            logger.warning("step %d: report not delivered (%s); training goes on", step, error)

    def advantages(self, rollouts: list[Rollout]) -> tuple[torch.Tensor, dict[str, float]]:
        """Group-relative advantages of this rank's rollouts, over whole groups.

        Returns:
            `(local_rollouts,)` advantages and global group statistics.

        """
        mine = [(r.prompt_index, r.reward) for r in rollouts]
        everyone = all_gather_objects(self.context, mine)
        offset = sum(len(part) for part in everyone[: self.context.rank])
        flat = [pair for part in everyone for pair in part]
        if not flat:
            return torch.zeros(0), {"groups": 0, "zero_variance_groups": 0, "effective": 0}
        group_index = torch.tensor([index for index, _ in flat])
        rewards = torch.tensor([reward for _, reward in flat], dtype=torch.float64)
        # Mean over prompts of each group's success rate: unlike the per-rollout rate it
        # does not depend on how the budget was spread (knapsack puts more rollouts on
        # the prompts that fail, which would pull a per-rollout average down).
        per_prompt: dict[int, list[float]] = {}
        for index, reward in flat:
            per_prompt.setdefault(index, []).append(float(reward >= self.success_threshold))
        prompt_success = sum(sum(v) / len(v) for v in per_prompt.values()) / len(per_prompt)
        estimator = core_algos.get_adv_estimator_fn(self.config.advantage_estimator)
        result = estimator(rewards, group_index, torch.ones(len(flat), 1))
        local = result.scores[offset : offset + len(mine)].to(torch.float32)
        stats = {
            "groups": float(result.groups),
            "zero_variance_groups": float(result.zero_variance_groups),
            "effective": float(result.effective_sequences),
            "rewards": float(rewards.sum()),
            "successes": float((rewards >= self.success_threshold).sum()),
            "rollouts": float(len(flat)),
            "prompt_success_rate": prompt_success,
        }
        return local, stats

    # ------------------------------------------------------------------ the loop

    def train_step(self, step: int) -> dict[str, Any]:
        """Run one step and return its metrics (global, identical on every rank)."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        prompt_ids = self.sampler.next_batch(self.config.batch_size)
        allocation = self.allocate(step, prompt_ids)
        timings["time_allocate"] = time.perf_counter() - started

        mark = time.perf_counter()
        rollouts = self.generate(step, prompt_ids, allocation.shards[self.context.rank])
        timings["time_generate"] = time.perf_counter() - mark

        mark = time.perf_counter()
        self.report(step, prompt_ids, rollouts)
        timings["time_report"] = time.perf_counter() - mark

        mark = time.perf_counter()
        advantages, group_stats = self.advantages(rollouts)
        prompts = [self.prompt_tokens(prompt_ids[r.prompt_index]) for r in rollouts]
        learned = self.update.learn(prompts, rollouts, advantages)
        timings["time_learn"] = time.perf_counter() - mark

        mark = time.perf_counter()
        if not learned["skipped"]:
            self.backend.sync_weights(self.model.state_dict())
        timings["time_sync"] = time.perf_counter() - mark

        local_tokens = float(sum(len(r.completion.token_ids) for r in rollouts))
        (global_tokens,) = all_reduce_sums(self.context, [local_tokens])
        rollouts_total = max(1.0, group_stats.get("rollouts", 0.0))
        metrics: dict[str, Any] = {
            "strategy": allocation.strategy,
            "backend": self.backend.name,
            "degraded": allocation.degraded,
            "prompts": sum(1 for n in allocation.counts if n > 0),
            "rollouts": int(group_stats.get("rollouts", 0)),
            "reward_mean": group_stats.get("rewards", 0.0) / rollouts_total,
            "success_rate": group_stats.get("successes", 0.0) / rollouts_total,
            "prompt_success_rate": group_stats.get("prompt_success_rate", 0.0),
            "effective_ratio": group_stats["effective"] / rollouts_total,
            "groups": int(group_stats["groups"]),
            "zero_variance_groups": int(group_stats["zero_variance_groups"]),
            "response_tokens": global_tokens / rollouts_total,
            "max_group_size": max(allocation.counts, default=0),
            **learned,
            **timings,
            "time_step": time.perf_counter() - started,
        }
        return metrics

    def save(self, step: int) -> Path | None:
        """Checkpoint after `step` completed steps (rank 0 writes; all ranks wait)."""
        folder = None
        if self.context.is_main:
            state = TrainerState(
                step=step,
                optimizer=self.optimizer.state_dict(),
                sampler=self.sampler.state_dict(),
                run_id=self.config.run_id,
                rng=capture_rng_state(),
            )
            folder = save_checkpoint(self.output_dir, self.model, self.tokenizer, state)
        barrier(self.context)
        return folder

    def train(self) -> list[dict[str, Any]]:
        """Run from the start (or the resumed) step to `config.steps`; return the metrics."""
        from tqdm.auto import tqdm

        config = self.config
        if self.context.is_main:
            self.client.ensure_run(config.run_id, config.run_settings_payload())
        barrier(self.context)
        show = config.progress and self.context.is_main
        with (
            MetricsLogger(
                self.output_dir, active=self.context.is_main, tensorboard=config.tensorboard
            ) as metrics_log,
            tqdm(total=config.steps, initial=self.start_step, disable=not show, desc="grpo") as bar,
        ):
            for step in range(self.start_step, config.steps):
                metrics = self.train_step(step)
                self.step = step + 1
                metrics_log.log(step, metrics)
                self.history.append({"step": step, **metrics})
                bar.update(1)
                bar.set_postfix(
                    reward=f"{metrics['reward_mean']:.2f}",
                    eff=f"{metrics['effective_ratio']:.2f}",
                    loss=f"{metrics['loss']:.3f}",
                )
                interval = config.checkpoint_interval
                if interval and self.step % interval == 0 and self.step < config.steps:
                    self.save(self.step)
            if config.steps > self.start_step or self.resumed_from is None:
                self.save(self.step)
        return self.history

    def close(self) -> None:
        """Release the generation engine."""
        self.backend.close()
