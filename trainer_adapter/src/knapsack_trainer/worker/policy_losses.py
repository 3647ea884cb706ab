"""Policy losses registered by name, as advantage estimators are in `core_algos`.

`TrainConfig.policy_loss` selects one (verl's `policy_loss.loss_mode` and
`register_policy_loss`). Every loss takes the same arguments (old and new per-token
log-probs, per-token advantages, the response mask, clip range, aggregation) and
returns a `PolicyLossOutput`, so `policy_update.py` calls whichever is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch

from knapsack_trainer.worker.core_algos import LossAggMode, agg_loss
from knapsack_trainer.worker.registry import Registry


class PolicyLoss(str, Enum):
    """Names of the registered policy losses (verl's `policy_loss.loss_mode`)."""

    VANILLA = "vanilla"
    """PPO's token-level clipped surrogate (Schulman et al. 2017, Eq. 7)."""
    GSPO = "gspo"
    """Zheng et al. 2025 (GSPO, Eq. 7): one importance ratio per sequence, the
    geometric mean of its token ratios; clip ranges are ~1e-3, not 0.2."""


@dataclass(frozen=True)
class PolicyLossOutput:
    """Output of a policy loss.

    Attributes:
        loss: Scalar aggregated loss (to minimise).
        clip_fraction: Share of valid tokens whose ratio was clipped (a float).
        approx_kl: Mean over valid tokens of (old_log_prob - log_prob), a float.
        per_token_loss: `(batch, response_length)` the unaggregated loss.

    """

    loss: torch.Tensor
    clip_fraction: float
    approx_kl: float
    per_token_loss: torch.Tensor


PolicyLossFn = Callable[..., PolicyLossOutput]
POLICY_LOSSES: Registry[PolicyLossFn] = Registry("policy loss")


def register_policy_loss(name: str | PolicyLoss) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Register a policy loss under `name`: every one takes `compute_policy_loss`'s arguments."""
    return POLICY_LOSSES.register(name)


def get_policy_loss_fn(name: str | PolicyLoss) -> PolicyLossFn:
    """The policy loss registered under `name` (ValueError if none)."""
    return POLICY_LOSSES.get(name)


def _clipped_surrogate(
    log_ratio: torch.Tensor,
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_ratio_low: float,
    clip_ratio_high: float | None,
    loss_agg_mode: str | LossAggMode,
    global_denominator: float | None,
    max_response_length: int | None,
) -> PolicyLossOutput:
    """-min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A), aggregated."""
    high = clip_ratio_low if clip_ratio_high is None else clip_ratio_high
    mask = response_mask.to(log_prob.dtype)
    ratio = torch.exp(log_ratio.clamp(min=-20.0, max=20.0))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + high)
    per_token = torch.maximum(unclipped, clipped)
    was_clipped = (clipped > unclipped).to(mask.dtype)
    tokens = mask.sum().clamp(min=1.0)
    loss = agg_loss(
        per_token,
        mask,
        loss_agg_mode,
        global_denominator=global_denominator,
        max_response_length=max_response_length,
    )
    token_log_ratio = (log_prob - old_log_prob).detach().clamp(min=-20.0, max=20.0)
    return PolicyLossOutput(
        loss=loss,
        clip_fraction=float((was_clipped * mask).sum() / tokens),
        approx_kl=float((-token_log_ratio * mask).sum() / tokens),
        per_token_loss=per_token,
    )


@register_policy_loss(PolicyLoss.VANILLA)
def compute_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float | None = None,
    loss_agg_mode: str | LossAggMode = LossAggMode.TOKEN_MEAN,
    global_denominator: float | None = None,
    max_response_length: int | None = None,
) -> PolicyLossOutput:
    """Token-level PPO clipped surrogate (Schulman et al. 2017, Eq. 7).

    L = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A), ratio =
    exp(log_prob - old_log_prob), where `old_log_prob` are the log-probabilities the
    generation engine sampled with; DAPO's decoupled `clip_ratio_high` is optional.

    Args:
        old_log_prob: `(batch, response_length)` log-probs at generation time.
        log_prob: `(batch, response_length)` log-probs of the current policy.
        advantages: `(batch, response_length)`.
        response_mask: `(batch, response_length)` valid-token mask.
        clip_ratio_low: eps_low.
        clip_ratio_high: eps_high (defaults to eps_low).
        loss_agg_mode: One of `LossAggMode`.
        global_denominator: See `agg_loss`.
        max_response_length: See `agg_loss`.

    Returns:
        The loss and diagnostics.

    """
    return _clipped_surrogate(
        log_prob - old_log_prob,
        old_log_prob,
        log_prob,
        advantages,
        response_mask,
        clip_ratio_low=clip_ratio_low,
        clip_ratio_high=clip_ratio_high,
        loss_agg_mode=loss_agg_mode,
        global_denominator=global_denominator,
        max_response_length=max_response_length,
    )


@register_policy_loss(PolicyLoss.GSPO)
def compute_gspo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_ratio_low: float = 3e-4,
    clip_ratio_high: float | None = 4e-4,
    loss_agg_mode: str | LossAggMode = LossAggMode.SEQ_MEAN_TOKEN_MEAN,
    global_denominator: float | None = None,
    max_response_length: int | None = None,
) -> PolicyLossOutput:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", Eq. 7 and 11).

    The ratio of sequence i is s_i = exp(mean_t(log_prob - old_log_prob)), the same
    for all its tokens, so one noisy token cannot clip or blow up its neighbours.
    Per token the value is sg[s_i] * pi(y_t) / sg[pi(y_t)]: equal to s_i, with the
    gradient of a token-level ratio (the paper's GSPO-token form, as verl writes it).
    The arguments are `compute_policy_loss`'s; the defaults are the paper's clip
    range and the per-sequence aggregation it is defined with.
    """
    mask = response_mask.to(log_prob.dtype)
    per_token = (log_prob - old_log_prob) * mask
    sequence = per_token.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
    log_ratio = sequence.detach().unsqueeze(-1) + log_prob - log_prob.detach()
    return _clipped_surrogate(
        log_ratio,
        old_log_prob,
        log_prob,
        advantages,
        response_mask,
        clip_ratio_low=clip_ratio_low,
        clip_ratio_high=clip_ratio_high,
        loss_agg_mode=loss_agg_mode,
        global_denominator=global_denominator,
        max_response_length=max_response_length,
    )
