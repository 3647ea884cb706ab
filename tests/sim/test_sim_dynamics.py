"""The simulator's pieces that need no service: GRPO signal, update, batches, metrics."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_trainer.sim import metrics
from knapsack_trainer.sim.dataset import PromptSet
from knapsack_trainer.sim.dynamics import (
    LearningRates,
    SkillModel,
    effective_rollouts,
    group_signal,
    sigmoid,
)
from knapsack_trainer.sim.runner import CandidateStream, SimConfig, batch_order, seeded_generators


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=64),
    data=st.data(),
    p=st.floats(min_value=0.001, max_value=0.999),
)
def test_group_signal_is_the_grpo_policy_gradient_on_the_logit(n: int, data, p: float) -> None:
    # GRPO: A_j = (r_j - mean) / std; d/dz log pi(r_j) = r_j - p for a Bernoulli policy.
    k = data.draw(st.integers(min_value=0, max_value=n))
    rewards = np.array([1.0] * k + [0.0] * (n - k))
    std = rewards.std()
    expected = 0.0 if std == 0 else float(np.sum((rewards - rewards.mean()) / std * (rewards - p)))
    got = group_signal(np.array([k]), np.array([n]))[0]
    assert got == pytest.approx(expected, abs=1e-9)


def test_uniform_outcome_groups_carry_no_signal() -> None:
    successes = np.array([0, 8, 3, 0, 1])
    trials = np.array([8, 8, 8, 0, 64])
    signal = group_signal(successes, trials)
    assert signal[0] == 0.0 and signal[1] == 0.0 and signal[3] == 0.0
    assert signal[2] > 0.0 and signal[4] > 0.0


def _model(prompts: int = 64, topics: int = 4, seed: int = 0) -> SkillModel:
    rng = np.random.default_rng(seed)
    return SkillModel(PromptSet.generate(prompts, topics, rng), LearningRates())


def test_only_mixed_groups_move_the_skill() -> None:
    model = _model()
    before = model.success_rates().copy()
    index = np.arange(8)
    model.grpo_step(index, successes=np.array([0, 8] * 4), trials=np.full(8, 8))
    np.testing.assert_array_equal(model.success_rates(), before)

    logits = model.logits().copy()
    model.grpo_step(index, successes=np.array([4] + [0] * 7), trials=np.full(8, 8))
    assert model.success_rates()[0] > before[0]
    same_topic = model.prompts.topic == model.prompts.topic[0]
    gain = model.logits() - logits  # the prompt itself learns most, then its topic
    assert gain[0] > gain[same_topic & (np.arange(64) != 0)].max()
    assert np.all(gain[~same_topic] > 0)  # the general skill helps everyone a little
    assert gain[same_topic & (np.arange(64) != 0)].min() > gain[~same_topic].max()


def test_rare_success_in_a_large_group_is_a_large_step() -> None:
    # One success out of 64 gets the advantage (1 - 1/64) / std ~ 7.9: finding a
    # rare success is what a bigger budget on a hard prompt buys.
    rare = group_signal(np.array([1]), np.array([64]))[0]
    even = group_signal(np.array([4]), np.array([8]))[0]
    assert rare > 1.5 * even


def test_dataset_and_batches_are_fixed_by_the_seed() -> None:
    config = SimConfig(prompts=300, batch_size=64, steps=12, topics=5)
    first = seeded_generators(7)
    second = seeded_generators(7)
    a = PromptSet.generate(config.prompts, config.topics, first[0], config.difficulty)
    b = PromptSet.generate(config.prompts, config.topics, second[0], config.difficulty)
    np.testing.assert_array_equal(a.bias, b.bias)
    np.testing.assert_array_equal(a.topic, b.topic)
    order = batch_order(config.prompts, config.batch_size, config.steps, first[1])
    np.testing.assert_array_equal(
        order, batch_order(config.prompts, config.batch_size, config.steps, second[1])
    )
    other = PromptSet.generate(config.prompts, config.topics, seeded_generators(8)[0])
    assert not np.array_equal(a.bias, other.bias)


def test_batches_visit_every_prompt_once_per_epoch() -> None:
    order = batch_order(prompts=100, batch_size=25, steps=8, rng=np.random.default_rng(0))
    assert order.shape == (8, 25)
    for epoch in range(2):
        chunk = order[epoch * 4 : (epoch + 1) * 4].ravel()
        assert sorted(chunk.tolist()) == list(range(100))
    for row in order:
        assert len(set(row.tolist())) == len(row)


def test_default_dataset_has_the_papers_spread() -> None:
    rates = sigmoid(PromptSet.generate(4000, 32, np.random.default_rng(0)).bias)
    assert np.mean(rates < 0.05) > 0.35  # many prompts out of reach: all-failure dominates
    assert np.mean(rates > 0.8) > 0.15  # and a block of easy ones
    assert np.mean((rates > 0.2) & (rates < 0.8)) > 0.1


def test_step_shares_add_up_and_skipped_prompts_do_not_count() -> None:
    successes = np.array([0, 8, 3, 0, 2])
    trials = np.array([8, 8, 8, 0, 40])
    effective, all_success, all_failure = metrics.batch_shares(successes, trials)
    assert effective == pytest.approx(48 / 64)
    assert all_success == pytest.approx(8 / 64)
    assert all_failure == pytest.approx(8 / 64)
    assert effective + all_success + all_failure == pytest.approx(1.0)
    assert metrics.budget_histogram(trials) == {
        "0": 1,
        "1-2": 0,
        "3-4": 0,
        "5-8": 3,
        "9-16": 0,
        "17-32": 0,
        "33-64": 1,
        "65-128": 0,
        "129+": 0,
    }


def test_difficulty_bands_cover_zero_and_one() -> None:
    bands = metrics.difficulty_band(np.array([0.0, 0.005, 0.5, 0.95, 1.0]))
    labels = [metrics.DIFFICULTY_LABELS[b] for b in bands]
    assert labels == ["p<0.01", "p<0.01", "0.4-0.6", "p>0.9", "p>0.9"]
    rollouts, prompts = metrics.by_difficulty(np.array([0.0, 0.5]), np.array([30, 2]))
    assert rollouts["p<0.01"] == 30 and prompts["0.4-0.6"] == 1


def test_a_step_that_spent_nothing_has_no_ratio() -> None:
    shares = metrics.batch_shares(np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64))
    assert all(np.isnan(share) for share in shares)


def test_simulator_and_demo_do_not_import_torch() -> None:
    # `make demo` installs no torch: the simulator and the demo must run without it.
    code = (
        "import sys, knapsack_trainer.sim, knapsack_trainer.demo, knapsack_trainer.demo.plots; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_linear_returns_grow_a_groups_update_linearly_in_its_size() -> None:
    # The defect: under the exact logistic gradient a 100-rollout group moves
    # its prompt 12.5 times as far as an 8-rollout one with the same mix; the old
    # docstring said extra rollouts helped only through more chances of a mixed group.
    signal = group_signal(np.array([4, 50]), np.array([8, 100]), returns="linear")
    assert signal[1] / signal[0] == pytest.approx(12.5)


def test_diminishing_returns_agree_at_eight_and_shrink_large_groups() -> None:
    sizes = np.array([2, 8, 16, 64, 100])
    linear = effective_rollouts(sizes, "linear")
    sqrt = effective_rollouts(sizes, "sqrt")
    capped = effective_rollouts(sizes, "capped")
    assert sqrt[1] == linear[1] == capped[1] == 8.0
    np.testing.assert_allclose(sqrt, np.sqrt(8 * sizes))
    np.testing.assert_array_equal(capped, np.minimum(sizes, 16))
    assert sqrt[4] / sqrt[1] == pytest.approx(np.sqrt(12.5))
    assert capped[4] == capped[2] == 16.0
    with pytest.raises(ValueError, match="returns"):
        effective_rollouts(sizes, "log")


def test_uniform_groups_of_eight_learn_the_same_under_every_returns_option() -> None:
    rng = np.random.default_rng(3)
    models = {r: _model() for r in ("linear", "sqrt", "capped")}
    for model, returns in zip(models.values(), models, strict=True):
        model.returns = returns
    index = np.arange(16)
    for _ in range(5):
        successes = rng.integers(0, 9, size=16)
        for model in models.values():
            model.grpo_step(index, successes, np.full(16, 8))
    np.testing.assert_array_equal(models["linear"].logits(), models["sqrt"].logits())
    np.testing.assert_array_equal(models["linear"].logits(), models["capped"].logits())


def test_held_out_prompts_gain_the_shared_skill_but_not_the_memorised_part() -> None:
    rng = np.random.default_rng(0)
    train = PromptSet.generate(64, 4, rng)
    held = PromptSet.generate(32, 4, rng, prefix="held")
    assert held.prompt_ids[0] == "held-000000"
    model = SkillModel(train, LearningRates())
    before_train, before_held = model.success_rates().copy(), model.transfer_rates(held).copy()
    for _ in range(5):
        model.grpo_step(np.arange(64), np.full(64, 4), np.full(64, 8))
    assert np.all(model.success_rates() > before_train)
    assert np.all(model.transfer_rates(held) > before_held)
    # A held-out prompt moves by the general and topic skill only; a trained one also
    # by its private (memorised) skill.
    shared_held = model.general + model.topic_skill[held.topic]
    np.testing.assert_allclose(model.transfer_rates(held), sigmoid(held.bias + shared_held))
    shared_train = model.general + model.topic_skill[train.topic]
    assert np.all(model.private_skill > 0)
    np.testing.assert_allclose(model.logits() - train.bias - shared_train, model.private_skill)
    with pytest.raises(ValueError, match="topics"):
        model.transfer_rates(PromptSet.generate(8, 5, rng))


def test_band_transitions_count_every_prompt_once() -> None:
    start = np.array([0.0, 0.005, 0.5, 0.5, 0.95])
    end = np.array([0.3, 0.005, 0.95, 0.5, 0.99])
    matrix = np.asarray(metrics.band_transitions(start, end))
    assert matrix.sum() == 5
    np.testing.assert_array_equal(
        matrix.sum(axis=1), list(metrics.difficulty_counts(start).values())
    )
    np.testing.assert_array_equal(matrix.sum(axis=0), list(metrics.difficulty_counts(end).values()))
    low, mid, top = (
        0,
        metrics.DIFFICULTY_LABELS.index("0.4-0.6"),
        len(metrics.DIFFICULTY_LABELS) - 1,
    )
    assert matrix[low, low] == 1 and matrix[low, metrics.DIFFICULTY_LABELS.index("0.2-0.4")] == 1
    assert matrix[mid, top] == 1 and matrix[mid, mid] == 1 and matrix[top, top] == 1


def test_candidate_stream_gives_distinct_prompts_and_covers_each_epoch() -> None:
    stream = CandidateStream(10, np.random.default_rng(0))
    first, second = stream.take(6), stream.take(6)
    assert len(set(first.tolist())) == 6 and len(set(second.tolist())) == 6
    assert len(stream.take(25)) == 10  # never more than the dataset
