"""The demo's outputs: summary.json, metrics.csv, report.md and the printed table.

Numbers are averaged over seeds: the mean effective-gradient ratio over all
steps (Fig. 6 compresses to it), and the dataset's state after the last step
(mean true success, mastered and never-solved shares, Fig. 8).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knapsack_trainer.sim import metrics
from knapsack_trainer.sim.runner import SimResult
from knapsack_trainer.sim.strategies import StrategySpec

TABLE_COLUMNS = (
    ("budget", "budget", "{:d}"),
    ("mean_rollouts", "spent/step", "{:.0f}"),
    ("mean_effective_ratio", "eff. ratio", "{:.3f}"),
    ("final_mean_success", "final success", "{:.3f}"),
    ("mastered_share", "mastered", "{:.3f}"),
    ("never_solved_share", "never solved", "{:.3f}"),
)


def strategy_summary(runs: Sequence[SimResult]) -> dict[str, Any]:
    """Seed-averaged figures of one strategy (`runs`: one result per seed)."""
    # Steps that spent no rollouts have no ratio (NaN) and are left out.
    effective = [np.nanmean([m.effective_ratio for m in r.steps]) for r in runs]
    final = [r.steps[-1] for r in runs]
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
    return {
        "budget": runs[0].budget,
        # What was actually spent: the filter spends less once few prompts remain
        # between p = 0 and p = 1 (max_n caps each group).
        "mean_rollouts": float(np.mean([m.rollouts for r in runs for m in r.steps])),
        "mean_effective_ratio": float(np.mean(effective)),
        "final_mean_success": float(np.mean([m.mean_success for m in final])),
        "mastered_share": float(np.mean([m.mastered_share for m in final])),
        "never_solved_share": float(np.mean([m.never_solved_share for m in final])),
        "seeds": [r.seed for r in runs],
        "effective_ratio_by_seed": [float(v) for v in effective],
        "final_mean_success_by_seed": [m.mean_success for m in final],
        "initial_mean_success": float(np.mean([r.steps[0].mean_success for r in runs])),
        "all_success_share": float(
            np.mean([np.nanmean([m.all_success_share for m in r.steps]) for r in runs])
        ),
        "all_failure_share": float(
            np.mean([np.nanmean([m.all_failure_share for m in r.steps]) for r in runs])
        ),
        "idle_steps": sum(m.rollouts == 0 for r in runs for m in r.steps),
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
    }


def build_summary(
    strategies: Sequence[StrategySpec],
    runs: dict[tuple[str, int], SimResult],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of summary.json: `{"strategies": {name: {...}}, ...extra}`."""
    by_name: dict[str, list[SimResult]] = {}
    for (name, _seed), result in sorted(runs.items(), key=lambda item: item[0]):
        by_name.setdefault(name, []).append(result)
    summary: dict[str, Any] = {
        "strategies": {
            spec.name: strategy_summary(by_name[spec.name])
            for spec in strategies
            if spec.name in by_name
        }
    }
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


def format_table(summary: dict[str, Any], markdown: bool = False) -> str:
    """The strategies side by side, as aligned text or a Markdown table."""
    header = ["strategy", *(title for _, title, _ in TABLE_COLUMNS)]
    body = [
        [name, *(fmt.format(values[key]) for key, _, fmt in TABLE_COLUMNS)]
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
    """The headline ratios the paper reports, where the strategies are present."""
    found = summary["strategies"]
    out: dict[str, float] = {}
    if "knapsack" in found and "uniform" in found:
        ks, un = found["knapsack"], found["uniform"]
        out["knapsack_vs_uniform_effective_ratio"] = (
            ks["mean_effective_ratio"] / un["mean_effective_ratio"]
        )
        out["knapsack_minus_uniform_final_success"] = (
            ks["final_mean_success"] - un["final_mean_success"]
        )
    if "knapsack" in found and "uniform-2x" in found:
        out["knapsack_minus_uniform_2x_final_success"] = (
            found["knapsack"]["final_mean_success"] - found["uniform-2x"]["final_mean_success"]
        )
    return out


def write_report(
    path: Path,
    summary: dict[str, Any],
    figures: dict[str, str],
    strategies: Sequence[StrategySpec],
) -> None:
    """report.md: setup, the table, the headline ratios and the figures."""
    setup = summary.get("config", {})
    lines = [
        "# knapsack-rl demo: simulated GRPO under five budget strategies",
        "",
        "A seeded model of GRPO learning dynamics (logistic success per prompt, updates "
        "only from groups with both successes and failures) asks the knapsack-rl service "
        "for every step's allocation and reports the outcomes back, exactly as a trainer "
        "would. Numbers are means over seeds.",
        "",
        f"Setup: {setup.get('prompts')} prompts, batch {setup.get('batch_size')}, "
        f"{setup.get('steps')} steps, seeds {setup.get('seeds')}, base budget "
        f"{setup.get('base_budget')} rollouts per step, service: {setup.get('service')}.",
        "",
        "| strategy | what it does |",
        "|---|---|",
        *(f"| {s.name} | {s.description} |" for s in strategies),
        "",
        "## Results",
        "",
        format_table(summary, markdown=True),
        "",
        "- budget: rollouts per step asked for; spent/step: rollouts actually spent "
        "(less than the budget only when the service could not spend it within max_n).",
        "- eff. ratio: share of rollouts in groups with both successes and failures "
        "(the only ones GRPO learns from), averaged over steps.",
        "- final success: mean true success rate over the whole dataset after the last step.",
        f"- mastered: share of prompts with p > {metrics.MASTERED_ABOVE}; never solved: "
        f"share with p < {metrics.NEVER_SOLVED_BELOW}.",
        "",
    ]
    for key, value in comparisons(summary).items():
        lines.append(f"- {key.replace('_', ' ')}: {value:.3f}")
    lines.append("")
    for title, filename in figures.items():
        lines += [f"## {title}", "", f"![{title}]({filename})", ""]
    path.write_text("\n".join(lines))
