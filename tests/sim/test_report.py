"""The report's sentences come from the numbers: synthetic summaries, no simulation."""

from __future__ import annotations

from typing import Any

import pytest

from knapsack_trainer.demo.narrative import bayes_section, returns_section, uniform_baseline
from knapsack_trainer.demo.report import check_equal_spend, comparisons


def entry(strategy: str, returns: str = "linear", **values: Any) -> dict[str, Any]:
    base = {
        "strategy": strategy,
        "returns": returns,
        "budget": 2048,
        "spends_budget": True,
        "rollouts_spent_by_seed": [307200, 307200],
        "mean_effective_ratio": 0.4,
        "first_epoch_effective_ratio": 0.388,
        "final_mean_success": 0.7,
        "final_mean_success_by_seed": [0.7, 0.7],
        "final_heldout_success": 0.6,
        "final_heldout_success_by_seed": [0.6, 0.6],
        "max_group": 8,
    }
    base.update(values)
    return base


def test_the_gain_under_each_returns_option_is_stated_from_the_runs() -> None:
    summary = {
        "strategies": {
            "uniform": entry("uniform"),
            "knapsack": entry(
                "knapsack", final_mean_success=0.88, final_mean_success_by_seed=[0.87, 0.89]
            ),
            "knapsack [sqrt]": entry(
                "knapsack", "sqrt", final_mean_success=0.75, final_mean_success_by_seed=[0.75, 0.75]
            ),
        }
    }
    text = "\n".join(returns_section(summary))
    assert "| knapsack | linear | +0.180 (+0.170, +0.190)" in text
    assert "| knapsack | sqrt | +0.050 (+0.050, +0.050)" in text
    assert "- knapsack: +0.180 over uniform with linear returns, +0.050 with sqrt returns." in text
    assert "Here" not in text  # one large-group strategy: nothing to compare
    summary["strategies"]["coba"] = entry(
        "coba", max_group=128, final_mean_success_by_seed=[0.92, 0.92]
    )
    summary["strategies"]["coba [sqrt]"] = entry(
        "coba", "sqrt", max_group=62, final_mean_success_by_seed=[0.69, 0.69]
    )
    text = "\n".join(returns_section(summary))
    assert "Here coba, whose groups are largest (128), gains most under linear" in text
    assert "least under sqrt returns" in text
    # Uniform has only its default run: it is the baseline under sqrt too.
    found = summary["strategies"]
    assert uniform_baseline(found, found["knapsack [sqrt]"]) is found["uniform"]
    assert comparisons(summary)["knapsack_minus_uniform_final_success_sqrt"] == pytest.approx(0.05)


def test_knapsack_bayes_goal_is_reported_as_not_reached_with_its_reason() -> None:
    summary = {
        "strategies": {
            "knapsack": entry("knapsack", final_mean_success=0.885),
            "knapsack-bayes": entry("knapsack-bayes", final_mean_success=0.846),
        }
    }
    text = " ".join(bayes_section(summary))
    assert "knapsack-bayes 0.846, knapsack 0.885: not reached" in text
    assert "0.388 against 0.388: not reached" in text
    assert "every prompt of every batch is unseen" in text
    summary["strategies"]["knapsack-bayes"].update(
        final_mean_success=0.88, first_epoch_effective_ratio=0.45
    )
    text = " ".join(bayes_section(summary))
    assert text.count(": reached") == 2 and "unseen" not in text


def test_unequal_spend_between_strategies_of_one_budget_is_refused() -> None:
    summary = {"strategies": {"a": entry("uniform"), "b": entry("knapsack")}}
    assert check_equal_spend(summary) == {307200: ["a", "b"]}
    summary["strategies"]["b"]["rollouts_spent_by_seed"] = [307200, 300000]
    with pytest.raises(AssertionError, match="spent"):
        check_equal_spend(summary)
    summary["strategies"]["b"]["spends_budget"] = False  # skip-extremes: exempt, flagged
    assert check_equal_spend(summary) == {307200: ["a"]}
