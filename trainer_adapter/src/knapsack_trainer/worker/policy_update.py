"""The learner's half of a GRPO step: PPO epochs over scored rollouts.

Kept apart from the loop (`trainer.py`) because it is the one piece that touches
gradients: it pads rollouts into tensors, takes the log-probs of the response tokens
under the policy (and the frozen reference when a KL term is on), applies the policy
loss selected by name (`policy_losses.py`), sums gradients over ranks and
steps the optimiser. Nothing here knows about the service or the allocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from knapsack_trainer.worker import core_algos
from knapsack_trainer.worker.config import TrainConfig
from knapsack_trainer.worker.distributed import DistContext, all_reduce_gradients, all_reduce_sums
from knapsack_trainer.worker.generation import Completion
from knapsack_trainer.worker.policy_losses import get_policy_loss_fn


@dataclass
class Rollout:
    """One scored completion of this rank."""

    prompt_index: int
    completion: Completion
    reward: float


class PolicyUpdate:
    """PPO epochs over this rank's rollouts, gradients summed over ranks.

    Args:
        model: The policy being trained.
        optimizer: Its optimiser.
        config: The run's configuration (loss, clip, KL, epochs, micro-batch).
        context: This process's place in the data-parallel job.
        pad_token_id: The tokenizer's pad id (padding is masked out anyway).
        reference: The frozen KL anchor, or None when `kl_coef` is 0.

    """

    def __init__(
        self,
        model: Any,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        context: DistContext,
        pad_token_id: int,
        reference: Any | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.config = config
        self.context = context
        self.pad_token_id = pad_token_id
        self.reference = reference
        self.policy_loss = get_policy_loss_fn(config.policy_loss)

    def batch_tensors(
        self,
        prompts: Sequence[list[int]],
        rollouts: Sequence[Rollout],
        advantages: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Right-padded `(rows, prompt+response)` inputs and `(rows, response)` targets.

        Args:
            prompts: Prompt token ids of each rollout (row i belongs to rollout i).
            rollouts: The rollouts.
            advantages: `(rows,)` advantage of each rollout.

        """
        device = self.context.device
        responses = [r.completion.token_ids for r in rollouts]
        width = max(len(p) + len(s) for p, s in zip(prompts, responses, strict=True))
        length = max(1, max(len(s) for s in responses))
        rows = len(rollouts)
        input_ids = torch.full((rows, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((rows, width), dtype=torch.long)
        targets = torch.full((rows, length), self.pad_token_id, dtype=torch.long)
        positions = torch.zeros((rows, length), dtype=torch.long)
        old_log_prob = torch.zeros((rows, length))
        mask = torch.zeros((rows, length))
        for row, (prompt, response, rollout) in enumerate(
            zip(prompts, responses, rollouts, strict=True)
        ):
            sequence = prompt + response
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            attention[row, : len(sequence)] = 1
            count = len(response)
            if count:
                targets[row, :count] = torch.tensor(response)
                old_log_prob[row, :count] = torch.tensor(rollout.completion.log_probs)
                mask[row, :count] = 1.0
            # The logit at position t predicts token t + 1.
            positions[row] = (len(prompt) - 1 + torch.arange(length)).clamp(max=width - 1)
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": attention.to(device),
            "targets": targets.to(device),
            "positions": positions.to(device),
            "old_log_prob": old_log_prob.to(device),
            "response_mask": mask.to(device),
            "advantages": (advantages.unsqueeze(-1) * mask).to(device),
        }

    def response_log_probs(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`(rows, response_length)` log-probs of the response tokens under `model`."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        index = batch["positions"].unsqueeze(-1).expand(-1, -1, logits.shape[-1])
        picked = logits.gather(1, index) / self.config.temperature
        return core_algos.token_log_probs(picked, batch["targets"])

    def learn(
        self,
        prompts: Sequence[list[int]],
        rollouts: Sequence[Rollout],
        advantages: torch.Tensor,
    ) -> dict[str, float]:
        """Run the PPO epochs; return loss, KL and clip diagnostics (global over ranks).

        Args:
            prompts: Prompt token ids of each rollout.
            rollouts: This rank's rollouts.
            advantages: `(rollouts,)` their advantages.

        """
        config = self.config
        tokens = float(sum(len(r.completion.token_ids) for r in rollouts))
        sequences = float(sum(1 for r in rollouts if r.completion.token_ids))
        # Zero-advantage rollouts add nothing to the policy loss: skip their forward pass
        # (but keep them in the denominator) unless the KL term needs them.
        active = [
            i
            for i, r in enumerate(rollouts)
            if r.completion.token_ids and (advantages[i] != 0 or self.reference is not None)
        ]
        totals = all_reduce_sums(self.context, [tokens, sequences, float(len(active))])
        global_tokens, global_sequences, global_active = totals
        token_mode = config.loss_agg_mode == core_algos.LossAggMode.TOKEN_MEAN.value
        denominator = global_tokens if token_mode else global_sequences
        if global_active == 0:
            return {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "skipped": 1.0}
        sums = {"loss": 0.0, "kl": 0.0, "clipped_tokens": 0.0, "approx_kl_tokens": 0.0}
        for _ in range(config.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            for start in range(0, len(active), config.micro_batch_size):
                rows = active[start : start + config.micro_batch_size]
                batch = self.batch_tensors(
                    [prompts[i] for i in rows], [rollouts[i] for i in rows], advantages[rows]
                )
                self._accumulate(batch, denominator, sums)
            all_reduce_gradients(self.context, self.model.parameters())
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
            self.optimizer.step()
        epochs = float(config.ppo_epochs)
        loss, kl, clipped, approx = all_reduce_sums(
            self.context,
            [sums["loss"], sums["kl"], sums["clipped_tokens"], sums["approx_kl_tokens"]],
        )
        learned_tokens = max(1.0, global_tokens * epochs)
        return {
            "loss": loss / epochs,
            "kl": kl / epochs,
            "clip_fraction": clipped / learned_tokens,
            "approx_kl": approx / learned_tokens,
            "skipped": 0.0,
        }

    def _accumulate(
        self, batch: dict[str, torch.Tensor], denominator: float, sums: dict[str, float]
    ) -> None:
        """Back-propagate one micro-batch's loss and add its diagnostics to `sums`."""
        config = self.config
        log_prob = self.response_log_probs(self.model, batch)
        output = self.policy_loss(
            batch["old_log_prob"],
            log_prob,
            batch["advantages"],
            batch["response_mask"],
            clip_ratio_low=config.clip_ratio,
            clip_ratio_high=config.clip_ratio_high,
            loss_agg_mode=config.loss_agg_mode,
            global_denominator=denominator,
            max_response_length=config.max_new_tokens,
        )
        loss = output.loss
        if self.reference is not None:
            with torch.no_grad():
                ref_log_prob = self.response_log_probs(self.reference, batch)
            kl = core_algos.agg_loss(
                core_algos.kl_penalty(log_prob, ref_log_prob, config.kl_penalty),
                batch["response_mask"],
                config.loss_agg_mode,
                global_denominator=denominator,
                max_response_length=config.max_new_tokens,
            )
            loss = loss + config.kl_coef * kl
            sums["kl"] += float(kl.detach())
        loss.backward()
        micro_tokens = float(batch["response_mask"].sum())
        sums["loss"] += float(loss.detach())
        sums["clipped_tokens"] += output.clip_fraction * micro_tokens
        sums["approx_kl_tokens"] += output.approx_kl * micro_tokens
