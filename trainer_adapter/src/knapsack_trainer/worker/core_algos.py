"""GRPO advantages and losses as pure functions registered by name.

The layout follows verl's `verl/trainer/ppo/core_algos.py`: every advantage estimator
and policy loss is a function over tensors, registered under a name in a `str` Enum
(`register_adv_est` here, `register_policy_loss` in `policy_losses.py`) so a config
can select it, with every tensor's shape in its docstring and explicit masks.

Two differences from verl, both because knapsack allocation makes groups of unequal
size the normal case rather than the exception:

* Groups are given as a `group_index` tensor (one integer per sequence) instead of a
  numpy array of uid strings, and group statistics are computed with `scatter_add`, so
  a batch may hold groups of size 1, 2 and 93 side by side.
* A group whose rewards are all equal (including every group of size 1) has zero
  advantage and is *counted*: it spends rollouts without giving a gradient, which is
  exactly the waste the knapsack allocation minimises (the paper's effective-gradient
  ratio). verl gives a size-1 group mean 0 and std 1, i.e. advantage = reward; here such
  a group carries no group-relative signal, so it contributes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch

from knapsack_trainer.worker.registry import Registry

#: Added to the group standard deviation before dividing (verl's `epsilon`).
STD_EPSILON = 1e-6
#: Rewards closer than this are treated as equal when deciding zero variance.
ZERO_VARIANCE_TOLERANCE = 1e-8


class AdvantageEstimator(str, Enum):
    """Names of the registered advantage estimators."""

    GRPO = "grpo"
    """Shao et al. 2024 (DeepSeekMath, Sec. 4.1.2): (r - mean) / (std + eps) per group."""
    GRPO_MEAN = "grpo_mean"
    """Mean-centred only: (r - mean); verl's `norm_adv_by_std_in_grpo=False`."""
    DR_GRPO = "dr_grpo"
    """Liu et al. 2025 (Dr. GRPO, Sec. 3.1): mean-centred, no std; pair it with the
    `seq-mean-token-sum-norm` aggregation to also remove the length bias."""


class LossAggMode(str, Enum):
    """How a `(batch, response_length)` loss matrix becomes a scalar."""

    TOKEN_MEAN = "token-mean"
    """Sum over all valid tokens / number of valid tokens (DAPO, Yu et al. 2025, Sec. 3.3)."""
    SEQ_MEAN_TOKEN_MEAN = "seq-mean-token-mean"
    """Mean over tokens inside each sequence, then mean over sequences (original GRPO)."""
    SEQ_MEAN_TOKEN_SUM_NORM = "seq-mean-token-sum-norm"
    """Sum over tokens / a constant (the max response length), mean over sequences (Dr. GRPO)."""


@dataclass(frozen=True)
class GroupAdvantages:
    """Output of an advantage estimator.

    Attributes:
        advantages: `(batch, response_length)` advantage broadcast over each response's
            valid tokens, zero on padding.
        scores: `(batch,)` the per-sequence advantage before broadcasting.
        zero_variance_groups: Number of groups whose rewards were all equal.
        groups: Number of distinct groups in the batch.
        effective_sequences: Number of sequences in groups with non-zero variance.

    """

    advantages: torch.Tensor
    scores: torch.Tensor
    zero_variance_groups: int
    groups: int
    effective_sequences: int


AdvantageFn = Callable[..., GroupAdvantages]
ADVANTAGE_ESTIMATORS: Registry[AdvantageFn] = Registry("advantage estimator")
ADVANTAGE_ESTIMATOR_REGISTRY = ADVANTAGE_ESTIMATORS.functions


def register_adv_est(name: str | AdvantageEstimator) -> Callable[[AdvantageFn], AdvantageFn]:
    """Register an advantage estimator under `name` (an `AdvantageEstimator` or a string)."""
    return ADVANTAGE_ESTIMATORS.register(name)


def get_adv_estimator_fn(name: str | AdvantageEstimator) -> AdvantageFn:
    """The advantage estimator registered under `name` (ValueError if none)."""
    return ADVANTAGE_ESTIMATORS.get(name)


@dataclass(frozen=True)
class GroupStatistics:
    """Statistics of each group, and the map from sequences to groups.

    Attributes:
        inverse: `(batch,)` dense group number (0..groups-1) of each sequence.
        size: `(groups,)` responses per group.
        mean: `(groups,)` mean reward.
        std: `(groups,)` unbiased std (Bessel's correction, as `torch.std` in verl);
            0 for a group of size 1.
        zero_variance: `(groups,)` True where every reward of the group is equal.

    """

    inverse: torch.Tensor
    size: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    zero_variance: torch.Tensor


def compute_group_statistics(rewards: torch.Tensor, group_index: torch.Tensor) -> GroupStatistics:
    """Per-group size, mean, std and zero-variance flag, for groups of unequal size.

    Args:
        rewards: `(batch,)` scalar reward of each sequence.
        group_index: `(batch,)` integer group id of each sequence (any integers).

    Returns:
        The statistics, computed in float64 so that equal rewards stay exactly equal.

    """
    rewards = rewards.to(torch.float64)
    _, inverse = torch.unique(group_index, return_inverse=True)
    n_groups = int(inverse.max().item()) + 1 if inverse.numel() else 0

    def per_group(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_groups, dtype=torch.float64).scatter_add_(0, inverse, values)

    size = per_group(torch.ones_like(rewards))
    mean = per_group(rewards) / size.clamp(min=1.0)
    centred = rewards - mean[inverse]
    var = per_group(centred**2) / (size - 1).clamp(min=1.0)
    spread = torch.zeros(n_groups, dtype=torch.float64).scatter_reduce_(
        0, inverse, centred.abs(), reduce="amax", include_self=False
    )
    return GroupStatistics(
        inverse=inverse,
        size=size,
        mean=mean,
        std=torch.where(size > 1, var.sqrt(), torch.zeros_like(var)),
        zero_variance=spread <= ZERO_VARIANCE_TOLERANCE,
    )


def _group_relative(
    rewards: torch.Tensor,
    group_index: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    norm_by_std: bool,
    epsilon: float,
) -> GroupAdvantages:
    stats = compute_group_statistics(rewards, group_index)
    scores = rewards.to(torch.float64) - stats.mean[stats.inverse]
    if norm_by_std:
        scores = scores / (stats.std[stats.inverse] + epsilon)
    zero = stats.zero_variance[stats.inverse]
    scores = torch.where(zero, torch.zeros_like(scores), scores)
    dtype = response_mask.dtype if response_mask.is_floating_point() else torch.float32
    scores = scores.to(dtype)
    return GroupAdvantages(
        advantages=scores.unsqueeze(-1) * response_mask.to(dtype),
        scores=scores,
        zero_variance_groups=int(stats.zero_variance.sum().item()),
        groups=int(stats.size.numel()),
        effective_sequences=int((~zero).sum().item()),
    )


@register_adv_est(AdvantageEstimator.GRPO)
def compute_grpo_outcome_advantage(
    rewards: torch.Tensor,
    group_index: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    norm_by_std: bool = True,
    epsilon: float = STD_EPSILON,
) -> GroupAdvantages:
    """GRPO outcome advantage over groups of any (and unequal) size.

    Shao et al. 2024, "DeepSeekMath", Sec. 4.1.2 (outcome supervision):
    A_i = (r_i - mean(r_group)) / (std(r_group) + eps), the same for every token.

    Args:
        rewards: `(batch,)` reward of each response.
        group_index: `(batch,)` group id of each response (responses to one prompt).
        response_mask: `(batch, response_length)` 1 on generated tokens, 0 on padding.
        norm_by_std: Divide by the group's std (False gives `grpo_mean`).
        epsilon: Added to the std to avoid dividing by zero.

    Returns:
        The advantages, `(batch, response_length)`, and group counts.

    """
    return _group_relative(
        rewards, group_index, response_mask, norm_by_std=norm_by_std, epsilon=epsilon
    )


@register_adv_est(AdvantageEstimator.GRPO_MEAN)
@register_adv_est(AdvantageEstimator.DR_GRPO)
def compute_mean_centred_advantage(
    rewards: torch.Tensor,
    group_index: torch.Tensor,
    response_mask: torch.Tensor,
    **_: object,
) -> GroupAdvantages:
    """Mean-centred group advantage, A_i = r_i - mean(r_group), without std scaling.

    Registered twice because two names mean this one rule: verl's `grpo_mean`
    (`norm_adv_by_std_in_grpo=False`) and Dr. GRPO's advantage (Liu et al. 2025,
    "Understanding R1-Zero-Like Training", Sec. 3.1): dividing by the group's std
    up-weights groups that are almost all right or all wrong (a question-level
    difficulty bias). Dr. GRPO's length-bias fix is the `seq-mean-token-sum-norm`
    aggregation, chosen separately.

    Args:
        rewards: `(batch,)` reward of each response.
        group_index: `(batch,)` group id of each response.
        response_mask: `(batch, response_length)` valid-token mask.

    Returns:
        The advantages, `(batch, response_length)`, and group counts.

    """
    return _group_relative(
        rewards, group_index, response_mask, norm_by_std=False, epsilon=STD_EPSILON
    )


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of `values * mask` over every element (shapes broadcast)."""
    return (values * mask).sum()


def agg_loss(
    loss_mat: torch.Tensor,
    loss_mask: torch.Tensor,
    loss_agg_mode: str | LossAggMode,
    *,
    global_denominator: float | None = None,
    max_response_length: int | None = None,
) -> torch.Tensor:
    """Aggregate a per-token loss matrix into a scalar.

    With data parallelism each rank holds a slice of the batch; passing the *global*
    token count (token-mean) or sequence count (the seq-mean modes) as
    `global_denominator` makes the all-reduced *sum* of the ranks' gradients equal
    the gradient of the whole batch's loss, whatever the slices' sizes.

    Args:
        loss_mat: `(batch, response_length)` per-token loss.
        loss_mask: `(batch, response_length)` 1 on tokens that count.
        loss_agg_mode: One of `LossAggMode`.
        global_denominator: Tokens (token-mean) or sequences (seq-mean-*) in the whole
            batch across ranks; defaults to this rank's own count.
        max_response_length: The constant of `seq-mean-token-sum-norm`; defaults to
            `loss_mat.shape[-1]`.

    Returns:
        A scalar tensor.

    """
    mode = LossAggMode(loss_agg_mode)
    mask = loss_mask.to(loss_mat.dtype)
    if mode is LossAggMode.TOKEN_MEAN:
        denominator = global_denominator if global_denominator is not None else mask.sum()
        return masked_sum(loss_mat, mask) / _at_least_one(denominator, loss_mat)
    if mode is LossAggMode.SEQ_MEAN_TOKEN_MEAN:
        tokens = mask.sum(dim=-1)
        per_sequence = (loss_mat * mask).sum(dim=-1) / tokens.clamp(min=1.0)
        per_sequence = torch.where(tokens > 0, per_sequence, torch.zeros_like(per_sequence))
        sequences = (tokens > 0).sum() if global_denominator is None else global_denominator
        return per_sequence.sum() / _at_least_one(sequences, loss_mat)
    # SEQ_MEAN_TOKEN_SUM_NORM
    constant = float(max_response_length or loss_mat.shape[-1])
    per_sequence = (loss_mat * mask).sum(dim=-1) / constant
    tokens = mask.sum(dim=-1)
    sequences = (tokens > 0).sum() if global_denominator is None else global_denominator
    return per_sequence.sum() / _at_least_one(sequences, loss_mat)


def _at_least_one(denominator: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(denominator, dtype=like.dtype, device=like.device).clamp(min=1.0)


class KLPenalty(str, Enum):
    """Estimators of KL(policy || reference) per token (Schulman 2020, "Approximating KL")."""

    K1 = "k1"
    """log p - log q: unbiased, high variance."""
    K3 = "low_var_kl"
    """exp(q - p) - (q - p) - 1: unbiased, non-negative, low variance (GRPO's choice)."""


def kl_penalty(
    log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str | KLPenalty = KLPenalty.K3
) -> torch.Tensor:
    """Per-token KL estimate between the policy and a frozen reference.

    Args:
        log_prob: `(batch, response_length)` policy log-probs of the sampled tokens.
        ref_log_prob: `(batch, response_length)` reference log-probs of the same tokens.
        kind: `k1` or `low_var_kl` (k3, clamped to [-10, 10] as verl does).

    Returns:
        `(batch, response_length)` KL estimate.

    """
    estimator = KLPenalty(kind)
    log_ratio = log_prob - ref_log_prob
    if estimator is KLPenalty.K1:
        return log_ratio
    inverse = torch.clamp(-log_ratio, min=-20.0, max=20.0)
    return torch.clamp(torch.exp(inverse) - inverse - 1.0, min=-10.0, max=10.0)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each chosen token.

    Args:
        logits: `(batch, length, vocab)` already divided by the sampling temperature.
        tokens: `(batch, length)` token ids.

    Returns:
        `(batch, length)` log p(tokens).

    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
