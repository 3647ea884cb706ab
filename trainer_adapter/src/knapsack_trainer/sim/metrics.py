"""Per-step metrics of a simulated run (the quantities of the paper's figures).

Shares of rollouts, not of groups: effective + all-success + all-failure = 1
for every step that spent rollouts, as in Fig. 2 of the paper. Dataset-wide
quantities (mean success, mastered, never solved) use the simulator's true
success rates, which a real trainer can only estimate by evaluation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

#: Group-size bins of the budget histogram: [low, high] inclusive, label.
BUDGET_BINS: tuple[tuple[int, int, str], ...] = (
    (0, 0, "0"),
    (1, 2, "1-2"),
    (3, 4, "3-4"),
    (5, 8, "5-8"),
    (9, 16, "9-16"),
    (17, 32, "17-32"),
    (33, 64, "33-64"),
    (65, 128, "65-128"),
    (129, 2**31 - 1, "129+"),
)

#: Bands of true success rate used for "budget by difficulty" and final states.
DIFFICULTY_EDGES: tuple[float, ...] = (0.0, 0.01, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0000001)
DIFFICULTY_LABELS: tuple[str, ...] = (
    "p<0.01",
    "0.01-0.2",
    "0.2-0.4",
    "0.4-0.6",
    "0.6-0.8",
    "0.8-0.9",
    "p>0.9",
)

#: A prompt counts as mastered above this true success rate (the paper's "easy").
MASTERED_ABOVE = 0.9
#: A prompt counts as never solved below this rate: under 1 success in 100 tries.
NEVER_SOLVED_BELOW = 0.01


def budget_histogram(trials: np.ndarray) -> dict[str, int]:
    """Number of prompts per group-size bin."""
    return {
        label: int(np.count_nonzero((trials >= low) & (trials <= high)))
        for low, high, label in BUDGET_BINS
    }


def difficulty_band(rates: np.ndarray) -> np.ndarray:
    """Index into `DIFFICULTY_LABELS` of each success rate."""
    return np.searchsorted(DIFFICULTY_EDGES, rates, side="right") - 1


@dataclass
class StepMetrics:
    """What one simulated step spent, got, and left the model at."""

    step: int
    budget: int
    rollouts: int
    effective_ratio: float
    all_success_share: float
    all_failure_share: float
    mean_success: float
    mastered_share: float
    never_solved_share: float
    max_group: int
    #: Mean true success of the held-out prompts (same topics, never trained on).
    heldout_success: float = float("nan")
    #: Groups the GRPO update learnt from (DAPO learns only when its batch is full).
    updated_groups: int = 0
    budget_histogram: dict[str, int] = field(default_factory=dict)
    #: Rollouts and prompts of the batch per band of true success rate at allocation.
    rollouts_by_difficulty: dict[str, int] = field(default_factory=dict)
    prompts_by_difficulty: dict[str, int] = field(default_factory=dict)
    degraded: bool = False

    def flat(self) -> dict[str, float | int | bool]:
        """One CSV row: nested dicts become `hist_<bin>` / `rollouts_<band>` columns."""
        row = {k: v for k, v in asdict(self).items() if not isinstance(v, dict)}
        row.update({f"hist_{k}": v for k, v in self.budget_histogram.items()})
        row.update({f"rollouts_{k}": v for k, v in self.rollouts_by_difficulty.items()})
        row.update({f"prompts_{k}": v for k, v in self.prompts_by_difficulty.items()})
        return row


def batch_shares(successes: np.ndarray, trials: np.ndarray) -> tuple[float, float, float]:
    """Effective, all-success and all-failure shares of the step's rollouts.

    NaN for a step that spent nothing (the filter, once it skips every prompt of
    the batch): a share of zero rollouts is undefined, not zero.
    """
    total = int(trials.sum())
    if total == 0:
        return math.nan, math.nan, math.nan
    played = trials > 0
    mixed = played & (successes > 0) & (successes < trials)
    all_success = played & (successes == trials)
    all_failure = played & (successes == 0)
    return (
        float(trials[mixed].sum()) / total,
        float(trials[all_success].sum()) / total,
        float(trials[all_failure].sum()) / total,
    )


def by_difficulty(rates: np.ndarray, trials: np.ndarray) -> tuple[dict[str, int], dict[str, int]]:
    """Rollouts and prompts of a batch per band of true success rate."""
    band = difficulty_band(rates)
    count = len(DIFFICULTY_LABELS)
    rollouts = np.bincount(band, weights=trials, minlength=count)
    prompts = np.bincount(band, minlength=count)
    return (
        {label: int(rollouts[i]) for i, label in enumerate(DIFFICULTY_LABELS)},
        {label: int(prompts[i]) for i, label in enumerate(DIFFICULTY_LABELS)},
    )


def dataset_state(rates: np.ndarray) -> tuple[float, float, float]:
    """Mean success, mastered share and never-solved share over the whole dataset."""
    return (
        float(rates.mean()),
        float(np.mean(rates > MASTERED_ABOVE)),
        float(np.mean(rates < NEVER_SOLVED_BELOW)),
    )


def band_transitions(start: np.ndarray, end: np.ndarray) -> list[list[int]]:
    """Prompts per (band at the start, band at the end): Fig. 7 of the paper, as counts.

    Row b holds where the prompts that started in band b ended up; rows sum to the
    initial band counts, columns to the final ones.
    """
    count = len(DIFFICULTY_LABELS)
    pair = difficulty_band(start) * count + difficulty_band(end)
    matrix = np.bincount(pair, minlength=count * count).reshape(count, count)
    return matrix.astype(int).tolist()


def difficulty_counts(rates: np.ndarray) -> dict[str, int]:
    """Prompts of the dataset per band of true success rate (Fig. 8)."""
    counts = np.bincount(difficulty_band(rates), minlength=len(DIFFICULTY_LABELS))
    return {label: int(counts[i]) for i, label in enumerate(DIFFICULTY_LABELS)}
