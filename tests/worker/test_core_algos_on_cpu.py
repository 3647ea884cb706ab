"""Advantages and losses against hand-computed values (no GPU, no engine)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from knapsack_trainer.worker import core_algos  # noqa: E402
from knapsack_trainer.worker.core_algos import (  # noqa: E402
    AdvantageEstimator,
    LossAggMode,
    agg_loss,
    compute_group_statistics,
    get_adv_estimator_fn,
    kl_penalty,
    register_adv_est,
)
from knapsack_trainer.worker.policy_losses import (  # noqa: E402
    PolicyLoss,
    compute_gspo_policy_loss,
    compute_policy_loss,
    get_policy_loss_fn,
    register_policy_loss,
)

pytestmark = pytest.mark.torch

EPS = core_algos.STD_EPSILON


def _advantages(name, rewards, groups, mask=None):
    rewards_t = torch.tensor(rewards, dtype=torch.float64)
    groups_t = torch.tensor(groups)
    mask_t = torch.ones(len(rewards), 1) if mask is None else torch.tensor(mask)
    return get_adv_estimator_fn(name)(rewards_t, groups_t, mask_t)


def test_grpo_groups_of_unequal_size_in_one_batch_on_cpu():
    # group 7: [1, 0, 0] mean 1/3, unbiased std sqrt(1/3); group 3: [1, 0] mean .5,
    # std sqrt(.5); group 5: [1] (size 1); group 9: [0, 0, 0, 0] (all equal).
    rewards = [1, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    groups = [7, 7, 7, 3, 3, 5, 9, 9, 9, 9]
    out = _advantages("grpo", rewards, groups)
    s3 = math.sqrt(1 / 3)
    s2 = math.sqrt(0.5)
    expected = [
        (2 / 3) / (s3 + EPS),
        (-1 / 3) / (s3 + EPS),
        (-1 / 3) / (s3 + EPS),
        0.5 / (s2 + EPS),
        -0.5 / (s2 + EPS),
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]
    assert out.scores.tolist() == pytest.approx(expected, rel=1e-6)
    assert out.groups == 4
    assert out.zero_variance_groups == 2  # the size-1 group and the all-zero group
    assert out.effective_sequences == 5


def test_size_two_group_gives_plus_minus_one_over_root_two_on_cpu():
    out = _advantages("grpo", [0.0, 1.0], [0, 0])
    assert out.scores.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)], rel=1e-5)


def test_size_one_group_contributes_nothing_on_cpu():
    out = _advantages("grpo", [1.0], [0])
    assert out.scores.tolist() == [0.0]
    assert out.zero_variance_groups == 1
    assert out.effective_sequences == 0


@pytest.mark.parametrize("name", ["grpo_mean", "dr_grpo"])
def test_mean_centred_variants_skip_std_on_cpu(name):
    out = _advantages(name, [1.0, 0.0, 0.0, 0.7, 0.7, 0.1], [0, 0, 0, 1, 1, 2])
    assert out.scores.tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0.0, 0.0, 0.0])
    assert out.zero_variance_groups == 2


def test_graded_rewards_and_broadcast_over_the_response_mask_on_cpu():
    mask = [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    out = _advantages("grpo_mean", [0.9, 0.1], [4, 4], mask)
    assert out.advantages.flatten().tolist() == pytest.approx([0.4, 0.4, 0.0, -0.4, 0.0, 0.0])


def test_group_statistics_on_cpu():
    stats = compute_group_statistics(torch.tensor([2.0, 4.0, 3.0]), torch.tensor([10, 10, 20]))
    assert stats.size.tolist() == [2.0, 1.0]
    assert stats.mean.tolist() == [3.0, 3.0]
    assert stats.std.tolist() == pytest.approx([math.sqrt(2.0), 0.0])
    assert stats.zero_variance.tolist() == [False, True]


def test_registry_refuses_duplicates_and_unknown_names_on_cpu():
    with pytest.raises(ValueError, match="already registered"):
        register_adv_est(AdvantageEstimator.GRPO)(lambda *a, **k: None)
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        get_adv_estimator_fn("nope")


def test_loss_aggregation_modes_on_cpu():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # token-mean: (1+2+3+4)/4; seq-mean-token-mean: (2 + 4)/2; sum-norm: (6/3 + 4/3)/2.
    assert agg_loss(loss, mask, "token-mean").item() == pytest.approx(2.5)
    assert agg_loss(loss, mask, LossAggMode.SEQ_MEAN_TOKEN_MEAN).item() == pytest.approx(3.0)
    assert agg_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(10 / 6)
    # A global denominator (data parallel): this rank's sum over the whole batch's tokens.
    assert agg_loss(loss, mask, "token-mean", global_denominator=8).item() == pytest.approx(1.25)


def test_policy_loss_clips_against_generation_log_probs_on_cpu():
    old = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    # ratios: 1.5 and 1.0 with A = +1; 0.6 (and a padded token) with A = -1.
    new = torch.log(torch.tensor([[0.75, 0.5], [0.3, 0.5]]))
    advantages = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    out = compute_policy_loss(old, new, advantages, mask, clip_ratio_low=0.2)
    # token losses: max(-1.5, -1.2) = -1.2; max(-1, -1) = -1; A=-1, ratio .6:
    # max(0.6, 0.8) = 0.8 ; padding ignored. token-mean = (-1.2 - 1 + 0.8) / 3.
    assert out.loss.item() == pytest.approx((-1.2 - 1.0 + 0.8) / 3, rel=1e-5)
    assert out.clip_fraction == pytest.approx(2 / 3)
    # Clipped tokens carry no gradient; the unclipped one has d/dlogp = -A * ratio / 3.
    new_leaf = new.clone().requires_grad_(True)
    compute_policy_loss(old, new_leaf, advantages, mask).loss.backward()
    assert new_leaf.grad.flatten().tolist() == pytest.approx([0.0, -1 / 3, 0.0, 0.0], abs=1e-6)


def test_dapo_clip_higher_on_cpu():
    old = torch.zeros(1, 1)
    new = torch.log(torch.tensor([[1.25]]))
    advantages = torch.ones(1, 1)
    mask = torch.ones(1, 1)
    low = compute_policy_loss(old, new, advantages, mask, clip_ratio_low=0.2)
    high = compute_policy_loss(old, new, advantages, mask, clip_ratio_low=0.2, clip_ratio_high=0.28)
    assert low.loss.item() == pytest.approx(-1.2)
    assert high.loss.item() == pytest.approx(-1.25)


def test_kl_estimators_on_cpu():
    log_p = torch.log(torch.tensor([0.5, 0.25]))
    log_q = torch.log(torch.tensor([0.25, 0.25]))
    assert kl_penalty(log_p, log_q, "k1").tolist() == pytest.approx([math.log(2), 0.0])
    # k3 = q/p - log(q/p) - 1 = 0.5 + log 2 - 1.
    assert kl_penalty(log_p, log_q).tolist() == pytest.approx([0.5 + math.log(2) - 1, 0.0])


def test_token_log_probs_on_cpu():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    assert core_algos.token_log_probs(logits, torch.tensor([[1]])).item() == pytest.approx(
        math.log(0.75)
    )


def test_grpo_mean_and_dr_grpo_are_one_function_registered_twice_on_cpu():
    assert get_adv_estimator_fn("grpo_mean") is get_adv_estimator_fn("dr_grpo")
    assert get_adv_estimator_fn("grpo") is not get_adv_estimator_fn("dr_grpo")


def test_policy_losses_are_registered_by_name_on_cpu():
    assert get_policy_loss_fn("vanilla") is compute_policy_loss
    assert get_policy_loss_fn(PolicyLoss.GSPO) is compute_gspo_policy_loss
    with pytest.raises(ValueError, match="already registered"):
        register_policy_loss(PolicyLoss.VANILLA)(lambda *a, **k: None)
    with pytest.raises(ValueError, match=r"unknown policy loss 'nope' \(known: gspo, vanilla\)"):
        get_policy_loss_fn("nope")


def test_gspo_uses_one_ratio_per_sequence_on_cpu():
    # Sequence 0: token ratios 1.5 and 1.0, so s_0 = sqrt(1.5) ~ 1.2247 for both tokens,
    # inside a 0.3 clip range, A = +1. Sequence 1: one token, ratio 0.6, A = -1,
    # clipped at 0.7 (loss max(0.6, 0.7) = 0.7). seq-mean-token-mean: (-s_0 + 0.7) / 2.
    old = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.5], [0.3, 0.5]])).requires_grad_(True)
    advantages = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    out = compute_gspo_policy_loss(
        old, new, advantages, mask, clip_ratio_low=0.3, clip_ratio_high=0.3
    )
    s0 = math.sqrt(1.5)
    assert out.loss.item() == pytest.approx((-s0 + 0.7) / 2, rel=1e-6)
    assert out.per_token_loss[0].tolist() == pytest.approx([-s0, -s0], rel=1e-6)
    assert out.clip_fraction == pytest.approx(1 / 3)
    out.loss.backward()
    # Both tokens of sequence 0 get the same gradient, -s_0 / (2 tokens * 2 sequences);
    # the token-level PPO loss would give -1.5/4 and -1/4.
    assert new.grad.flatten().tolist() == pytest.approx([-s0 / 4, -s0 / 4, 0.0, 0.0], abs=1e-6)
