"""Group-relative advantages over groups of uneven size (pure torch, no trainer).

GRPO normalises each rollout's reward within the group of rollouts of its prompt.
Trainers that assume equal groups reshape the batch as `(prompts, group_size)`
(TRL: `rewards.view(-1, num_generations)`); with a per-prompt n from the service,
groups differ in size, so here every statistic is a segment reduction over a
label per rollout instead. The arithmetic is TRL's (`GRPOTrainer`, v0.19 to 1.16):
NaN rewards (unscorable completions) are left out of the mean and the standard
deviation (Bessel-corrected, as `trl.trainer.utils.nanstd`), the advantage is
`(r - mean) / (std + 1e-4)` under `scale_rewards="group"`, and a NaN advantage is 0.
A group of one rollout has no deviation: its advantage is 0, not its raw reward.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch

#: TRL's epsilon in `advantages / (std + 1e-4)`.
STD_EPSILON = 1e-4


def group_labels(group_sizes: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """Group index of each rollout when group i is `group_sizes[i]` consecutive rollouts.

    Returns:
        int64 tensor `(sum(group_sizes),)`; groups of size 0 own no rollout.

    """
    sizes = torch.as_tensor(list(group_sizes), dtype=torch.long, device=device)
    if (sizes < 0).any():
        raise ValueError("group sizes must be non-negative")
    return torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)


def group_mean_std(
    values: torch.Tensor, labels: torch.Tensor, groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NaN-aware mean, Bessel-corrected std and count of `values` per group.

    Args:
        values: float `(rollouts,)` (NaN = no value).
        labels: int64 `(rollouts,)`, group of each rollout in `[0, groups)`.
        groups: Number of groups.

    Returns:
        `(mean, std, count)`, each `(groups,)`; the mean of a group with no value is
        NaN, the std of a group with fewer than two values is 0.

    """
    present = ~torch.isnan(values)
    clean = torch.where(present, values, torch.zeros_like(values))
    count = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(
        0, labels, present.to(values.dtype)
    )
    total = torch.zeros_like(count).index_add_(0, labels, clean)
    mean = total / count  # NaN where count == 0
    deviation = torch.where(present, clean - mean[labels], torch.zeros_like(values))
    squares = torch.zeros_like(count).index_add_(0, labels, deviation**2)
    variance = torch.where(count > 1, squares / (count - 1).clamp(min=1), torch.zeros_like(count))
    return mean, variance.sqrt(), count


def grouped_advantages(
    rewards: torch.Tensor, labels: torch.Tensor, groups: int, scale_rewards: str = "group"
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO advantages of `rewards` with groups given by `labels` (TRL's sum_then_normalize).

    Args:
        rewards: float `(rollouts,)`, the weighted sum of the reward functions (NaN =
            unscorable).
        labels: int64 `(rollouts,)`.
        groups: Number of groups.
        scale_rewards: `"group"` (divide by the group's std), `"batch"` (by the std of
            the whole batch) or `"none"`.

    Returns:
        `(advantages (rollouts,), zero_std (groups,) bool)`: zero_std marks the groups
        whose rewards are all equal (no gradient), the per-group share TRL's
        `frac_reward_zero_std` means to report.

    """
    mean, std, _ = group_mean_std(rewards, labels, groups)
    advantages = rewards - mean[labels]
    if scale_rewards == "group":
        advantages = advantages / (std[labels] + STD_EPSILON)
    elif scale_rewards == "batch":
        present = rewards[~torch.isnan(rewards)]
        batch_std = present.std() if present.numel() > 1 else present.new_zeros(())
        advantages = advantages / (batch_std + STD_EPSILON)
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}")
    zero_std = torch.isclose(std, torch.zeros_like(std))
    return torch.nan_to_num(advantages, nan=0.0), zero_std


def plan_digest(step: int, prompt_ids: Sequence[str], group_sizes: Sequence[int]) -> str:
    """SHA-256 (hex, 16 characters) of a step's whole plan: step, prompts in order, sizes."""
    text = json.dumps([int(step), list(prompt_ids), [int(n) for n in group_sizes]])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


__all__ = [
    "STD_EPSILON",
    "group_labels",
    "group_mean_std",
    "grouped_advantages",
    "plan_digest",
]
