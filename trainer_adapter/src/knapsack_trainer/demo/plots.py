"""The demo's figures, in the spirit of the paper's Figures 2, 5, 6, 7, 8 and 9.

matplotlib with the Agg backend: files only, no display, no GUI toolkit.
Curves are seed means, lightly smoothed (a moving average over a few steps)
because a single step's 256 groups make a noisy ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from knapsack_trainer.sim import metrics
from knapsack_trainer.sim.runner import SimResult

Runs = dict[tuple[str, int], SimResult]

COLORS = {
    "uniform": "#ff7f0e",
    "uniform-2x": "#8c564b",
    "skip-extremes": "#7f7f7f",
    "dapo": "#9467bd",
    "mopps": "#e377c2",
    "coba": "#17becf",
    "knapsack": "#1f77b4",
    "knapsack-bayes": "#2ca02c",
}
#: Line style of each returns option in the diminishing-returns figure.
RETURNS_STYLE = {"linear": "-", "sqrt": "--", "capped": ":"}


def _series(runs: Runs, name: str, attribute: str) -> np.ndarray:
    """(seeds, steps) values of one metric for one strategy."""
    rows = [
        [getattr(m, attribute) for m in result.steps]
        for (strategy, _), result in sorted(runs.items())
        if strategy == name
    ]
    return np.asarray(rows, dtype=np.float64)


def _across_seeds(series: np.ndarray, reduce: str) -> np.ndarray:
    """Seed mean/min/max per step, ignoring steps without rollouts (NaN ratios).

    A step where every seed spent nothing stays NaN, which matplotlib draws as a gap.
    """
    present = ~np.isnan(series)
    filled = np.where(present, series, {"mean": 0.0, "min": np.inf, "max": -np.inf}[reduce])
    if reduce == "mean":
        counts = present.sum(axis=0)
        out = np.divide(
            filled.sum(axis=0), counts, out=np.full(counts.shape, np.nan), where=counts > 0
        )
    else:
        out = filled.min(axis=0) if reduce == "min" else filled.max(axis=0)
        out = np.where(present.any(axis=0), out, np.nan)
    return out


def _smooth(values: np.ndarray, width: int = 5) -> np.ndarray:
    if len(values) < width:
        return values
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def _names(runs: Runs, reruns: bool = False) -> list[str]:
    """Run labels in order; the diminishing-returns reruns ("name [sqrt]") only if asked."""
    seen: list[str] = []
    for name, _ in runs:
        if name not in seen and (reruns or " [" not in name):
            seen.append(name)
    return seen


def _split(label: str) -> tuple[str, str | None]:
    """("knapsack", "sqrt") for "knapsack [sqrt]"; (label, None) for a default run."""
    if " [" in label and label.endswith("]"):
        name, returns = label[:-1].split(" [", 1)
        return name, returns
    return label, None


def _color(name: str) -> str | None:
    return COLORS.get(name)


def effective_ratio(runs: Runs, path: Path) -> None:
    """Fig. 6: effective-gradient ratio over training, per strategy."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in _names(runs):
        series = _series(runs, name, "effective_ratio")
        steps = np.arange(series.shape[1])
        ax.plot(steps, _smooth(_across_seeds(series, "mean")), label=name, color=_color(name))
        ax.fill_between(
            steps,
            _smooth(_across_seeds(series, "min")),
            _smooth(_across_seeds(series, "max")),
            alpha=0.15,
            color=_color(name),
        )
    ax.set(xlabel="step", ylabel="effective-gradient ratio", ylim=(0, 1))
    ax.set_title("Share of rollouts with a non-zero gradient (cf. paper Fig. 6)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def zero_gradient_breakdown(runs: Runs, path: Path, names: Sequence[str]) -> None:
    """Fig. 2: effective vs all-success vs all-failure shares over training."""
    present = [n for n in names if n in _names(runs)]
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.8), squeeze=False)
    for ax, name in zip(axes[0], present, strict=True):
        for attribute, label, color in (
            ("effective_ratio", "effective", "#1f77b4"),
            ("all_success_share", "all-success", "#ff7f0e"),
            ("all_failure_share", "all-failure", "#2ca02c"),
        ):
            series = _across_seeds(_series(runs, name, attribute), "mean")
            ax.plot(_smooth(series), label=label, color=color)
        ax.set(xlabel="step", ylabel="share of rollouts", ylim=(0, 1), title=name)
        ax.legend(fontsize=8)
    fig.suptitle("Zero-gradient breakdown (cf. paper Fig. 2)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def budget_by_difficulty(runs: Runs, path: Path) -> None:
    """Fig. 5: group-size histogram and mean rollouts per prompt by true difficulty."""
    names = _names(runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    labels = [label for _, _, label in metrics.BUDGET_BINS]
    bands = metrics.DIFFICULTY_LABELS
    width = 0.8 / max(1, len(names))
    for offset, name in enumerate(names):
        histogram = np.zeros(len(labels))
        rollouts = np.zeros(len(bands))
        prompts = np.zeros(len(bands))
        for (strategy, _), result in runs.items():
            if strategy != name:
                continue
            for step in result.steps:
                histogram += [step.budget_histogram.get(label, 0) for label in labels]
                rollouts += [step.rollouts_by_difficulty.get(b, 0) for b in bands]
                prompts += [step.prompts_by_difficulty.get(b, 0) for b in bands]
        share = histogram / max(1.0, histogram.sum())
        x = np.arange(len(labels)) + offset * width
        left.bar(x, share, width=width, label=name, color=_color(name))
        mean_n = np.divide(rollouts, prompts, out=np.zeros_like(rollouts), where=prompts > 0)
        x = np.arange(len(metrics.DIFFICULTY_LABELS)) + offset * width
        right.bar(x, mean_n, width=width, label=name, color=_color(name))
    left.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, fontsize=8)
    left.set(xlabel="rollouts given to a prompt", ylabel="share of prompt-steps", yscale="log")
    left.set_title("Budget distribution (cf. paper Fig. 5)")
    right.set_xticks(
        np.arange(len(metrics.DIFFICULTY_LABELS)) + 0.4 - width / 2,
        metrics.DIFFICULTY_LABELS,
        fontsize=8,
    )
    right.set(xlabel="true success rate when allocated", ylabel="mean rollouts per prompt")
    right.set_title("Budget by difficulty")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mastered(runs: Runs, path: Path) -> None:
    """Fig. 8: prompts mastered over time, and the final difficulty distribution."""
    names = _names(runs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for name in names:
        series = _series(runs, name, "mastered_share").mean(axis=0)
        left.plot(series, label=name, color=_color(name))
    left.set(xlabel="step", ylabel=f"share of prompts with p > {metrics.MASTERED_ABOVE}")
    left.set_title("Prompts mastered over training")
    left.legend(fontsize=8)
    width = 0.8 / max(1, len(names))
    bands = metrics.DIFFICULTY_LABELS
    for offset, name in enumerate(names):
        finals = [r.final_difficulty for (s, _), r in runs.items() if s == name]
        counts = np.mean([[f[b] for b in bands] for f in finals], axis=0)
        right.bar(
            np.arange(len(bands)) + offset * width,
            counts,
            width=width,
            label=name,
            color=_color(name),
        )
    right.set_xticks(np.arange(len(bands)) + 0.4 - width / 2, bands, fontsize=8)
    right.set(xlabel="true success rate after training", ylabel="prompts")
    right.set_title("Final difficulty distribution (cf. paper Fig. 8)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def budget_efficiency(runs: Runs, path: Path) -> None:
    """Fig. 9: knapsack at budget B against uniform at B and at 2B."""
    names = [n for n in ("uniform", "knapsack", "uniform-2x") if n in _names(runs)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    finals, spreads, labels = [], [], []
    for name in names:
        series = _series(runs, name, "mean_success")
        budget = next(r.budget for (s, _), r in runs.items() if s == name)
        label = f"{name} (budget {budget})"
        left.plot(series.mean(axis=0), label=label, color=_color(name))
        finals.append(series[:, -1].mean())
        spreads.append(series[:, -1].std())
        labels.append(label)
    left.set(xlabel="step", ylabel="mean true success over the dataset")
    left.set_title("Learning curves")
    left.legend(fontsize=8)
    right.bar(range(len(names)), finals, yerr=spreads, capsize=4, color=[_color(n) for n in names])
    right.set_xticks(range(len(names)), labels, fontsize=8)
    low = min(finals) if finals else 0.0
    right.set_ylim(max(0.0, low - 0.1), min(1.0, max(finals, default=1.0) + 0.05))
    right.set(ylabel="final mean success (seed mean, std)")
    right.set_title("Knapsack at B vs uniform at 2B (cf. paper Fig. 9)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def success_curves(runs: Runs, path: Path, default_returns: str = "linear") -> None:
    """Training-set and held-out success over training; the diminishing-returns reruns."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for name in _names(runs):
        color = _color(name)
        left.plot(_series(runs, name, "mean_success").mean(axis=0), color=color, label=name)
        left.plot(_series(runs, name, "heldout_success").mean(axis=0), color=color, ls="--")
    left.set(xlabel="step", ylabel="mean true success")
    left.set_title("Training prompts (solid) and held-out prompts (dashed)")
    left.legend(fontsize=7)
    for label in _names(runs, reruns=True):
        name, returns = _split(label)
        if not any(_split(other)[0] == name and _split(other)[1] for other in _names(runs, True)):
            continue
        style = RETURNS_STYLE.get(returns or default_returns, "-")
        right.plot(
            _series(runs, label, "mean_success").mean(axis=0),
            color=_color(name),
            ls=style,
            label=f"{name} ({returns or default_returns})",
        )
    if "uniform" in _names(runs):
        right.plot(
            _series(runs, "uniform", "mean_success").mean(axis=0),
            color=_color("uniform"),
            label="uniform (any returns: groups of 8)",
        )
    right.set(xlabel="step", ylabel="mean true success (training prompts)")
    right.set_title("Under each returns option (how a group's update grows with n)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def transitions(runs: Runs, path: Path) -> None:
    """Fig. 7: where the prompts of each starting difficulty band end, per strategy."""
    names = _names(runs)
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False)
    labels = metrics.DIFFICULTY_LABELS
    for ax, name in zip(axes.ravel(), names, strict=False):
        matrix = np.sum(
            [np.asarray(r.band_transitions) for (s, _), r in runs.items() if s == name], axis=0
        ).astype(np.float64)
        totals = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        ax.imshow(shares, vmin=0.0, vmax=1.0, cmap="Blues")
        for i in range(len(labels)):
            for j in range(len(labels)):
                if shares[i, j] >= 0.05:
                    ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(labels)), labels, fontsize=6, rotation=45)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set(xlabel="band after the last step", ylabel="band at the start", title=name)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle("Difficulty transitions, first to last step (cf. paper Fig. 7)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(runs: Runs, out_dir: Path, default_returns: str = "linear") -> dict[str, str]:
    """Write every figure; returns {title: filename} for the report."""
    figures = {
        "Effective-gradient ratio (Fig. 6)": "effective_ratio.png",
        "Budget distribution by difficulty (Fig. 5)": "budget_by_difficulty.png",
        "All-success and all-failure shares (Fig. 2)": "zero_gradient.png",
        "Difficulty transitions (Fig. 7)": "transitions.png",
        "Prompts mastered (Fig. 8)": "mastered.png",
        "Knapsack at B vs uniform at 2B (Fig. 9)": "budget_efficiency.png",
        "Held-out prompts and diminishing returns": "success_curves.png",
    }
    effective_ratio(runs, out_dir / "effective_ratio.png")
    budget_by_difficulty(runs, out_dir / "budget_by_difficulty.png")
    zero_gradient_breakdown(runs, out_dir / "zero_gradient.png", ("uniform", "knapsack"))
    transitions(runs, out_dir / "transitions.png")
    mastered(runs, out_dir / "mastered.png")
    budget_efficiency(runs, out_dir / "budget_efficiency.png")
    success_curves(runs, out_dir / "success_curves.png", default_returns)
    return figures
