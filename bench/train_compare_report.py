"""Statistics and plots of `train_compare.py`: paired differences, bootstrap spread, figures.

Seeds are paired (one setup per seed, shared by every strategy), so each comparison
is made seed by seed: the difference of a strategy's figure and uniform's at the same
seed, then the mean of those differences, a 95% percentile-bootstrap interval over
seeds (resampling whole seeds) and the count of seeds it wins, ties and loses, with
the two-sided sign-test p-value. With 4 seeds no sign test can reach p < 0.05 (the
smallest two-sided p is 0.125): the interval and the counts are the honest reading.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CURVE_COLUMNS = [
    "strategy",
    "seed",
    "step",
    "rollouts_spent",
    "heldout_success",
    "effective_ratio",
    "train_prompt_success",
    "rollouts",
    "max_group_size",
    "mixed_groups",
]
METRICS = ("final_heldout_success", "heldout_success_auc", "mean_effective_ratio")
#: Reported beside METRICS when every result has it (not in the test's minimal rows).
EXTRA_METRICS = ("mean_mixed_groups",)
BASELINE = "uniform"
BOOTSTRAP_DRAWS = 10_000
COLORS = {
    "uniform": "#7f7f7f",
    "uniform-2x": "#000000",
    "knapsack": "#d62728",
    "knapsack-bayes": "#1f77b4",
}


def success_auc(curve: Sequence[dict[str, Any]]) -> float:
    """Area under held-out success against training steps, divided by the steps.

    Trapezoids between the evaluated points, so the figure is the mean height of the
    curve over training, in [0, 1]: it rewards learning early as well as ending high.
    """
    points = [(r["step"], r["heldout_success"]) for r in curve if r["heldout_success"] is not None]
    if len(points) < 2:
        return points[0][1] if points else 0.0
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(points))
    return area / (points[-1][0] - points[0][0])


def spread(per_prompt: Sequence[float]) -> dict[str, float]:
    """Share of prompts never solved, always solved and in between."""
    count = max(1, len(per_prompt))
    zero = sum(1 for p in per_prompt if p == 0.0) / count
    one = sum(1 for p in per_prompt if p == 1.0) / count
    return {"p0": zero, "mixed": 1.0 - zero - one, "p1": one}


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test (ties dropped)."""
    trials = wins + losses
    if trials == 0:
        return 1.0
    low = min(wins, losses)
    tail = sum(math.comb(trials, k) for k in range(low + 1)) / 2**trials
    return min(1.0, 2 * tail)


def bootstrap_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean, resampling the values."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = rng.choice(data, size=(BOOTSTRAP_DRAWS, len(data)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means per strategy, and every strategy's paired differences against uniform."""
    names = list(dict.fromkeys(r["strategy"] for r in results))
    by_key = {(r["strategy"], r["seed"]): r for r in results}
    means = {}
    for name in names:
        rows = [r for r in results if r["strategy"] == name]
        present = [m for m in (*METRICS, *EXTRA_METRICS) if all(m in r for r in rows)]
        means[name] = {m: sum(r[m] for r in rows) / len(rows) for m in present}
        means[name]["seeds"] = len(rows)
    paired: dict[str, Any] = {}
    for name in names:
        if name == BASELINE or BASELINE not in names:
            continue
        paired[name] = {}
        seeds = [s for (n, s) in by_key if n == name and (BASELINE, s) in by_key]
        for metric in METRICS:
            diffs = [by_key[(name, s)][metric] - by_key[(BASELINE, s)][metric] for s in seeds]
            wins = sum(d > 0 for d in diffs)
            losses = sum(d < 0 for d in diffs)
            low, high = bootstrap_interval(diffs) if diffs else (0.0, 0.0)
            paired[name][metric] = {
                "mean_difference": sum(diffs) / len(diffs) if diffs else 0.0,
                "per_seed": diffs,
                "bootstrap_95": [low, high],
                "wins": wins,
                "ties": len(diffs) - wins - losses,
                "losses": losses,
                "sign_test_p": sign_test_p(wins, losses),
            }
    return {"means": means, "paired_vs_uniform": paired}


def one_line(result: dict[str, Any]) -> str:
    return (
        f"{result['strategy']:>14} seed {result['seed']}: held-out "
        f"{result['initial_heldout_success']:.3f} -> {result['final_heldout_success']:.3f} "
        f"(auc {result['heldout_success_auc']:.3f}), effective ratio "
        f"{result['mean_effective_ratio']:.3f}, {result['rollouts_spent']} rollouts, "
        f"{result['seconds']:.0f} s"
    )


def summary_text(summary: dict[str, Any]) -> str:
    lines = ["", "strategy        final   auc    eff.ratio"]
    for name, row in summary["means"].items():
        lines.append(
            f"{name:<14} {row['final_heldout_success']:.3f}  {row['heldout_success_auc']:.3f}"
            f"  {row['mean_effective_ratio']:.3f}"
        )
    for name, metrics in summary["paired_vs_uniform"].items():
        for metric, d in metrics.items():
            low, high = d["bootstrap_95"]
            lines.append(
                f"{name} - uniform, {metric}: {d['mean_difference']:+.4f} "
                f"[{low:+.4f}, {high:+.4f}], W/T/L {d['wins']}/{d['ties']}/{d['losses']}"
            )
    return "\n".join(lines)


def _by_strategy(curves: Sequence[dict[str, Any]], key: str) -> dict[str, dict[int, list]]:
    """{strategy: {seed: [(rollouts_spent, step, value)]}} for rows where `key` is set."""
    grouped: dict[str, dict[int, list]] = {}
    for row in curves:
        if row.get(key) is None:
            continue
        seeds = grouped.setdefault(row["strategy"], {})
        seeds.setdefault(row["seed"], []).append((row["rollouts_spent"], row["step"], row[key]))
    return grouped


def plot_heldout(curves: Sequence[dict[str, Any]], path: Path) -> None:
    """Held-out success against rollouts spent: each seed thin, the seed mean thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, seeds in _by_strategy(curves, "heldout_success").items():
        color = COLORS.get(name)
        for points in seeds.values():
            ax.plot([p[0] for p in points], [p[2] for p in points], color=color, alpha=0.2, lw=1)
        length = min(len(points) for points in seeds.values())
        xs = np.mean([[p[0] for p in pts[:length]] for pts in seeds.values()], axis=0)
        ys = np.mean([[p[2] for p in pts[:length]] for pts in seeds.values()], axis=0)
        ax.plot(xs, ys, color=color, lw=2.2, marker="o", ms=3, label=f"{name} (mean)")
    ax.set_xlabel("rollouts spent")
    ax.set_ylabel("held-out success (16 samples per prompt)")
    ax.set_title("Held-out success at equal rollouts (thin: single seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_effective_ratio(curves: Sequence[dict[str, Any]], path: Path, width: int = 5) -> None:
    """The effective-gradient ratio per step (mean over seeds, moving average)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, seeds in _by_strategy(curves, "effective_ratio").items():
        length = min(len(points) for points in seeds.values())
        steps = [p[1] for p in next(iter(seeds.values()))[:length]]
        ys = np.mean([[p[2] for p in pts[:length]] for pts in seeds.values()], axis=0)
        half = width // 2
        # A centred mean over the points that exist (no zero padding at the ends).
        smooth = [float(np.mean(ys[max(0, i - half) : i + half + 1])) for i in range(len(ys))]
        ax.plot(steps, smooth, color=COLORS.get(name), lw=2, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("effective-gradient ratio")
    ax.set_ylim(0, 1)
    ax.set_title("Share of rollouts in groups with a non-zero advantage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
