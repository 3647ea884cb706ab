"""The trainer-loop baselines: DAPO's dynamic sampling, MoPPS and CoBA, at equal rollouts."""

from __future__ import annotations

import numpy as np
import pytest

from knapsack_trainer.sim import (
    CobaPolicy,
    DynamicSamplingPolicy,
    MoppsPolicy,
    SimConfig,
    UnequalSpendError,
    simulate,
)
from knapsack_trainer.sim.runner import Groups, StepPlay

SMALL = SimConfig(prompts=320, batch_size=64, steps=12, topics=8)


class RecordingDapo(DynamicSamplingPolicy):
    """DAPO that keeps what it learnt from, step by step."""

    def __init__(self, steps: int) -> None:
        super().__init__(steps)
        self.updates: list[Groups] = []

    def play(self, step, batch, prompt_ids, budget, rollouts):  # type: ignore[no-untyped-def]
        played = super().play(step, batch, prompt_ids, budget, rollouts)
        self.updates.append(played.update)
        return played


def test_dapo_learns_only_from_full_batches_of_mixed_groups() -> None:
    policy = RecordingDapo(SMALL.steps)
    result = simulate(SMALL, 0, policy, SMALL.base_budget)
    assert all(m.rollouts == SMALL.base_budget for m in result.steps)
    sizes = [len(u) for u in policy.updates]
    # Early on a generation batch holds fewer mixed groups than a batch: no update
    # until they are pooled, then exactly one batch (the last step flushes).
    assert 0 in sizes
    assert all(size in (0, SMALL.batch_size) for size in sizes[:-1])
    for update in policy.updates:
        assert np.all((update.successes > 0) & (update.successes < update.trials))
    assert [m.updated_groups for m in result.steps] == sizes


def test_mopps_trains_on_the_candidates_sampled_closest_to_one_half() -> None:
    policy = MoppsPolicy(prompts=100, seed=0, discount=0.5)
    policy.a[:50], policy.b[:50] = 50.0, 50.0  # confidently p = 0.5
    policy.a[50:], policy.b[50:] = 1.0, 99.0  # confidently p = 0.01
    chosen = policy.select(np.arange(100), 50)
    assert sorted(chosen.tolist()) == list(range(50))


def test_mopps_posterior_is_discounted_towards_the_prior() -> None:
    policy = MoppsPolicy(prompts=3, seed=0, discount=0.5)
    policy.a[:] = [9.0, 1.0, 3.0]
    policy.b[:] = [1.0, 9.0, 3.0]
    policy.update(np.array([0, 2]), successes=np.array([2, 8]), trials=np.array([8, 8]))
    np.testing.assert_allclose(policy.a, [0.5 * 9 + 0.5 + 2, 1.0, 0.5 * 3 + 0.5 + 8])
    np.testing.assert_allclose(policy.b, [0.5 * 1 + 0.5 + 6, 9.0, 0.5 * 3 + 0.5 + 0])


def test_mopps_and_coba_spend_exactly_the_budget_and_differ_from_uniform_batches() -> None:
    for policy in (MoppsPolicy(SMALL.prompts, seed=1), CobaPolicy(SMALL.prompts)):
        result = simulate(SMALL, 1, policy, SMALL.base_budget)
        assert sum(m.rollouts for m in result.steps) == SMALL.steps * SMALL.base_budget
        assert result.steps[-1].mean_success > result.steps[0].mean_success
    coba = simulate(SMALL, 1, CobaPolicy(SMALL.prompts), SMALL.base_budget)
    assert coba.steps[0].max_group == SMALL.rollouts_per_prompt  # nothing seen: even spread
    assert max(m.max_group for m in coba.steps) > 16


def test_coba_policy_tracks_last_visit_rates_and_the_global_failure_rate() -> None:
    policy = CobaPolicy(prompts=10)
    assert policy.failure_rate == pytest.approx(8 / 9)  # CoBA's initial shape (9, 2)

    class Fixed:
        def roll(self, index, trials):  # type: ignore[no-untyped-def]
            return np.minimum(trials, np.arange(len(index)))

    batch = np.arange(4)
    play = policy.play(0, batch, [f"p{i}" for i in range(10)], 32, Fixed())  # type: ignore[arg-type]
    np.testing.assert_array_equal(play.update.trials, [8, 8, 8, 8])
    np.testing.assert_allclose(policy.last_rate[:4], [0, 1 / 8, 2 / 8, 3 / 8])
    assert np.isnan(policy.last_rate[4:]).all()
    assert policy.failure_rate == pytest.approx(1 - np.mean([0, 1 / 8, 2 / 8, 3 / 8]))


def test_a_policy_that_overspends_is_refused() -> None:
    class Greedy:
        spends_budget = True

        def play(self, step, batch, prompt_ids, budget, rollouts):  # type: ignore[no-untyped-def]
            trials = np.full(len(batch), budget // len(batch) + 1)
            return StepPlay(Groups(batch, rollouts.roll(batch, trials), trials))

    with pytest.raises(UnequalSpendError, match="step 0"):
        simulate(SMALL, 0, Greedy(), SMALL.base_budget)
