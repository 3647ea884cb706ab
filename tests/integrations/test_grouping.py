"""Group-relative advantages over uneven groups, against a per-group reference."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")

from knapsack_trainer.integrations.grouping import (  # noqa: E402
    group_labels,
    grouped_advantages,
    plan_digest,
)

pytestmark = pytest.mark.torch


def reference(rewards: list[float], sizes: list[int], scale: str) -> list[float]:
    """Each group on its own, TRL's formula written out per group."""
    out: list[float] = []
    position = 0
    present_all = [r for r in rewards if not math.isnan(r)]
    batch_mean = sum(present_all) / len(present_all)
    batch_std = math.sqrt(sum((r - batch_mean) ** 2 for r in present_all) / (len(present_all) - 1))
    for n in sizes:
        group = rewards[position : position + n]
        position += n
        present = [r for r in group if not math.isnan(r)]
        mean = sum(present) / len(present) if present else math.nan
        std = (
            math.sqrt(sum((r - mean) ** 2 for r in present) / (len(present) - 1))
            if len(present) > 1
            else 0.0
        )
        for r in group:
            value = r - mean
            if scale == "group":
                value /= std + 1e-4
            elif scale == "batch":
                value /= batch_std + 1e-4
            out.append(0.0 if math.isnan(value) else value)
    return out


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_uneven_groups_match_the_per_group_reference(scale: str) -> None:
    rng = random.Random(7)
    for _ in range(50):
        sizes = [rng.choice([0, 1, 2, 3, 5, 8]) for _ in range(rng.randint(1, 9))]
        if sum(sizes) < 2:
            continue
        rewards = [rng.choice([0.0, 1.0, 0.5, math.nan]) for _ in range(sum(sizes))]
        if sum(not math.isnan(r) for r in rewards) < 2:
            continue
        labels = group_labels(sizes)
        got, _ = grouped_advantages(torch.tensor(rewards), labels, len(sizes), scale)
        assert got.tolist() == pytest.approx(reference(rewards, sizes, scale), abs=1e-5)


def test_equal_groups_equal_trls_reshape() -> None:
    # TRL's own arithmetic for equal groups: view(-1, G), mean and nanstd per row.
    nanstd = pytest.importorskip("trl.trainer.utils").nanstd

    rewards = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    grouped = rewards.view(-1, 4)
    mean = grouped.mean(dim=1).repeat_interleave(4)
    std = nanstd(grouped, dim=1).repeat_interleave(4)
    trl_advantages = (rewards - mean) / (std + 1e-4)
    ours, zero_std = grouped_advantages(rewards, group_labels([4, 4, 4]), 3)
    assert ours.tolist() == pytest.approx(trl_advantages.tolist(), abs=1e-6)
    assert zero_std.tolist() == [False, False, True]


def test_trls_reshape_is_wrong_for_uneven_groups() -> None:
    # Groups of 2 and 6 (a knapsack plan with num_generations = 4): the reshape mixes them.
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    ours, zero_std = grouped_advantages(rewards, group_labels([2, 6]), 2)
    reshaped = rewards.view(-1, 4)
    trl_like = (rewards - reshaped.mean(dim=1).repeat_interleave(4)) / (
        reshaped.std(dim=1).repeat_interleave(4) + 1e-4
    )
    assert ours[2:].abs().max() == 0  # the group of 6 all succeeded: no advantage
    assert zero_std.tolist() == [False, True]
    assert trl_like[2:4].abs().max() > 0.1  # TRL's view hands them a spurious one


def test_a_group_of_one_gets_no_advantage_not_its_raw_reward() -> None:
    ours, zero_std = grouped_advantages(torch.tensor([1.0, 0.0, 1.0]), group_labels([1, 2]), 2)
    assert ours[0] == 0 and bool(zero_std[0])


def test_plan_digest_names_the_whole_plan() -> None:
    base = plan_digest(3, ["a", "b"], [2, 6])
    assert base == plan_digest(3, ["a", "b"], [2, 6])
    assert (
        len(
            {
                base,
                plan_digest(4, ["a", "b"], [2, 6]),
                plan_digest(3, ["b", "a"], [2, 6]),
                plan_digest(3, ["a", "b"], [6, 2]),
            }
        )
        == 4
    )
