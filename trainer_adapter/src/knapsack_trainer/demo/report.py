"""The demo's outputs: summary.json, metrics.csv, report.md and the printed table.

Numbers are averaged over seeds, with the spread across seeds beside them: the
mean effective-gradient ratio over all steps (Fig. 6 compresses to it) and over
the first epoch, and the dataset's state after the last step (mean true
success of the training set and of the held-out prompts, mastered and
never-solved shares, Fig. 8). The narrative of report.md lives in
`demo.narrative`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knapsack_trainer.demo import narrative
from knapsack_trainer.demo.narrative import uniform_baseline
from knapsack_trainer.sim import metrics
from knapsack_trainer.sim.runner import SimResult
from knapsack_trainer.sim.strategies import StrategySpec


@dataclass(frozen=True)
class RunLabel:
    """One row of the table: a strategy under one returns option."""

    name: str
    spec: StrategySpec
    returns: str


TABLE_COLUMNS = (
    ("returns", "returns", "{}"),
    ("budget", "budget", "{:d}"),
    ("mean_rollouts", "spent/step", "{:.0f}"),
    ("mean_effective_ratio", "eff. ratio", "{:.3f}"),
    ("first_epoch_effective_ratio", "eff. 1st epoch", "{:.3f}"),
    ("final_mean_success", "final success", "{:.3f}"),
    ("final_mean_success_sd", "sd", "{:.3f}"),
    ("final_heldout_success", "held-out", "{:.3f}"),
    ("mastered_share", "mastered", "{:.3f}"),
    ("never_solved_share", "never solved", "{:.3f}"),
    ("max_group", "max group", "{:d}"),
)


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def strategy_summary(runs: Sequence[SimResult], first_epoch_steps: int = 10) -> dict[str, Any]:
    """Seed-averaged figures of one strategy (`runs`: one result per seed)."""
    # Steps that spent no rollouts have no ratio (NaN) and are left out.
    effective = [float(np.nanmean([m.effective_ratio for m in r.steps])) for r in runs]
    first_epoch = [
        float(np.nanmean([m.effective_ratio for m in r.steps[:first_epoch_steps]])) for r in runs
    ]
    final = [r.steps[-1] for r in runs]
    success, success_sd = _mean_sd([m.mean_success for m in final])
    heldout, heldout_sd = _mean_sd([m.heldout_success for m in final])
    rollouts = {band: 0 for band in metrics.DIFFICULTY_LABELS}
    prompts = {band: 0 for band in metrics.DIFFICULTY_LABELS}
    histogram = {label: 0 for _, _, label in metrics.BUDGET_BINS}
    for run in runs:
        for step in run.steps:
            for band in rollouts:
                rollouts[band] += step.rollouts_by_difficulty.get(band, 0)
                prompts[band] += step.prompts_by_difficulty.get(band, 0)
            for label in histogram:
                histogram[label] += step.budget_histogram.get(label, 0)
    transitions = np.sum([np.asarray(r.band_transitions) for r in runs], axis=0)
    return {
        "budget": runs[0].budget,
        "mean_rollouts": float(np.mean([m.rollouts for r in runs for m in r.steps])),
        "rollouts_spent_by_seed": [r.rollouts_spent for r in runs],
        "mean_effective_ratio": float(np.mean(effective)),
        "first_epoch_effective_ratio": float(np.mean(first_epoch)),
        "final_mean_success": success,
        "final_mean_success_sd": success_sd,
        "final_heldout_success": heldout,
        "final_heldout_success_sd": heldout_sd,
        "mastered_share": float(np.mean([m.mastered_share for m in final])),
        "never_solved_share": float(np.mean([m.never_solved_share for m in final])),
        "seeds": [r.seed for r in runs],
        "effective_ratio_by_seed": effective,
        "first_epoch_effective_ratio_by_seed": first_epoch,
        "final_mean_success_by_seed": [m.mean_success for m in final],
        "final_heldout_success_by_seed": [m.heldout_success for m in final],
        "initial_mean_success": float(np.mean([r.steps[0].mean_success for r in runs])),
        "initial_heldout_success": float(np.mean([r.initial_heldout_success for r in runs])),
        "all_success_share": float(
            np.mean([np.nanmean([m.all_success_share for m in r.steps]) for r in runs])
        ),
        "all_failure_share": float(
            np.mean([np.nanmean([m.all_failure_share for m in r.steps]) for r in runs])
        ),
        "idle_steps": sum(m.rollouts == 0 for r in runs for m in r.steps),
        "update_steps": float(np.mean([sum(m.updated_groups > 0 for m in r.steps) for r in runs])),
        "max_group": max(m.max_group for r in runs for m in r.steps),
        "degraded_steps": sum(m.degraded for r in runs for m in r.steps),
        "budget_histogram": histogram,
        "mean_rollouts_by_difficulty": {
            band: (rollouts[band] / prompts[band] if prompts[band] else None) for band in rollouts
        },
        "final_difficulty": {
            band: float(np.mean([r.final_difficulty[band] for r in runs]))
            for band in metrics.DIFFICULTY_LABELS
        },
        "initial_difficulty": {
            band: float(np.mean([r.initial_difficulty[band] for r in runs]))
            for band in metrics.DIFFICULTY_LABELS
        },
        "band_transitions": transitions.astype(int).tolist(),
    }


def build_summary(
    labels: Mapping[str, RunLabel],
    runs: dict[tuple[str, int], SimResult],
    extra: dict[str, Any] | None = None,
    first_epoch_steps: int = 10,
) -> dict[str, Any]:
    """The content of summary.json: `{"strategies": {label: {...}}, ...extra}`, in label order."""
    by_name: dict[str, list[SimResult]] = {}
    for (name, _seed), result in sorted(runs.items(), key=lambda item: item[0]):
        by_name.setdefault(name, []).append(result)
    strategies: dict[str, Any] = {}
    for name, label in labels.items():
        if name not in by_name:
            continue
        entry = strategy_summary(by_name[name], first_epoch_steps)
        entry["strategy"] = label.spec.name
        entry["returns"] = label.returns
        entry["kind"] = label.spec.kind
        entry["spends_budget"] = label.spec.spends_budget
        strategies[name] = entry
    summary: dict[str, Any] = {"strategies": strategies}
    summary.update(extra or {})
    return summary


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """summary.json, indented for people and diffs."""
    path.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")


def write_metrics_csv(path: Path, runs: dict[tuple[str, int], SimResult]) -> int:
    """metrics.csv: one row per strategy, seed and step; returns the row count."""
    rows = []
    for (name, seed), result in runs.items():
        for step in result.steps:
            rows.append({"strategy": name, "seed": seed, **step.flat()})
    if not rows:
        raise ValueError("no runs to write")
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _cell(fmt: str, value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return fmt.format(value)


def format_table(summary: dict[str, Any], markdown: bool = False) -> str:
    """The strategies side by side, as aligned text or a Markdown table."""
    header = ["strategy", *(title for _, title, _ in TABLE_COLUMNS)]
    body = [
        [name, *(_cell(fmt, values[key]) for key, _, fmt in TABLE_COLUMNS)]
        for name, values in summary["strategies"].items()
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    fmt_row = "  ".join(
        f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)
    ).format
    lines = [fmt_row(*header), fmt_row(*("-" * w for w in widths))]
    lines += [fmt_row(*row) for row in body]
    return "\n".join(lines)


def comparisons(summary: dict[str, Any]) -> dict[str, float]:
    """The headline differences, where the strategies are present.

    knapsack against uniform under each returns option (the same seeds, so the
    difference of means is the mean of per-seed differences), against uniform at
    twice the budget, and knapsack-bayes against knapsack.
    """
    found = summary["strategies"]
    out: dict[str, float] = {}
    for key, entry in found.items():
        if entry["strategy"] not in ("knapsack", "coba"):
            continue
        suffix = "" if " [" not in key else f"_{entry['returns']}"
        uniform = uniform_baseline(found, entry)
        if uniform is None:
            continue
        name = entry["strategy"]
        out[f"{name}_vs_uniform_effective_ratio{suffix}"] = (
            entry["mean_effective_ratio"] / uniform["mean_effective_ratio"]
        )
        out[f"{name}_minus_uniform_final_success{suffix}"] = (
            entry["final_mean_success"] - uniform["final_mean_success"]
        )
        out[f"{name}_minus_uniform_heldout_success{suffix}"] = (
            entry["final_heldout_success"] - uniform["final_heldout_success"]
        )
    if "knapsack" in found and "uniform-2x" in found:
        out["knapsack_minus_uniform_2x_final_success"] = (
            found["knapsack"]["final_mean_success"] - found["uniform-2x"]["final_mean_success"]
        )
    if "knapsack" in found and "knapsack-bayes" in found:
        ks, kb = found["knapsack"], found["knapsack-bayes"]
        out["bayes_minus_knapsack_final_success"] = (
            kb["final_mean_success"] - ks["final_mean_success"]
        )
        out["bayes_minus_knapsack_first_epoch_effective_ratio"] = (
            kb["first_epoch_effective_ratio"] - ks["first_epoch_effective_ratio"]
        )
    return out


def check_equal_spend(summary: dict[str, Any]) -> dict[int, list[str]]:
    """Strategies by rollouts spent per run; raises if two that promised equal spend differ.

    `simulate` already holds every `spends_budget` policy to its budget each step;
    this is the end-to-end check over the demo's runs, by budget.
    """
    spent: dict[int, list[str]] = {}
    by_budget: dict[int, set[int]] = {}
    for name, entry in summary["strategies"].items():
        if not entry["spends_budget"]:
            continue
        for total in entry["rollouts_spent_by_seed"]:
            spent.setdefault(total, []).append(name)
            by_budget.setdefault(entry["budget"], set()).add(total)
    for budget, totals in by_budget.items():
        if len(totals) != 1:
            raise AssertionError(f"strategies at budget {budget} spent {sorted(totals)} rollouts")
    return {total: sorted(set(names)) for total, names in spent.items()}


def write_report(
    path: Path,
    summary: dict[str, Any],
    figures: dict[str, str],
    labels: Mapping[str, RunLabel],
) -> None:
    """report.md: setup, the table, what the gains depend on, assumptions, the figures."""
    lines = narrative.report_lines(
        summary, figures, labels, format_table(summary, markdown=True), comparisons(summary)
    )
    path.write_text("\n".join(lines))
