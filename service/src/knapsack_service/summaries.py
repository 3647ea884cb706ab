"""Step summaries: the budget histogram and difficulty bands, and the summary read back.

The stores keep a step's summary as flat counters (a Redis hash, a `Counter`) and
know nothing of what they mean: an allocation hands `record_allocation` the
increments computed here, and `summary_from_fields` turns the counters read back
into the contract's `StepSummary` fields. (Here rather than in `reporting.py`:
`allocation.py` needs the increments, and `reporting` imports `allocation`.)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from knapsack_service.bands import DIFFICULTY_BANDS, difficulty_band
from knapsack_service.store.records import REPORT_SUMMARY_FIELDS

#: Budget histogram buckets by group size n: (label, largest n in the bucket).
BUDGET_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("0", 0),
    ("1", 1),
    ("2", 2),
    ("3-4", 4),
    ("5-8", 8),
    ("9-16", 16),
    ("17-32", 32),
    ("33-64", 64),
    ("65-128", 128),
    ("129+", None),
)
_BUDGET_UPPER = np.array([upper for _, upper in BUDGET_BUCKETS[:-1]], dtype=np.int64)

ALLOCATION_SUMMARY_FIELDS: tuple[str, ...] = (
    "allocations",
    "allocated_rollouts",
    "allocated_prompts",
)
#: Hash-field prefixes of the histograms in a step summary.
BUDGET_PREFIX = "h:"
DIFFICULTY_PROMPTS_PREFIX = "dp:"
DIFFICULTY_ROLLOUTS_PREFIX = "dr:"


def allocation_increments(n: np.ndarray, p_hat: np.ndarray) -> dict[str, int]:
    """Step-summary hash increments of one allocation (only non-zero entries).

    Args:
        n: Group size per prompt, shape (prompts,), non-negative integers.
        p_hat: Estimated success rate per prompt, shape (prompts,), NaN = unseen.

    Raises:
        ValueError: Shapes differ or a group size is negative.

    """
    n = np.asarray(n)
    p_hat = np.asarray(p_hat, dtype=np.float64)
    if n.ndim != 1 or n.shape != p_hat.shape:
        raise ValueError(f"n {n.shape} and p_hat {p_hat.shape} must be equal 1-d shapes")
    if (
        n.size
        and not np.issubdtype(n.dtype, np.integer)
        and not (np.all(np.isfinite(n)) and np.all(n == np.floor(n)))
    ):
        raise ValueError("n must hold whole numbers")
    n = n.astype(np.int64)
    if n.size and n.min() < 0:
        raise ValueError("n must be non-negative")

    increments = {
        "allocations": 1,
        "allocated_rollouts": int(n.sum()),
        "allocated_prompts": int(n.size),
    }
    budget = np.bincount(
        np.searchsorted(_BUDGET_UPPER, n, side="left"), minlength=len(BUDGET_BUCKETS)
    )
    for (label, _), count in zip(BUDGET_BUCKETS, budget.tolist(), strict=True):
        if count:
            increments[BUDGET_PREFIX + label] = count

    band = difficulty_band(p_hat)
    prompts = np.bincount(band, minlength=len(DIFFICULTY_BANDS))
    rollouts = np.bincount(band, weights=n, minlength=len(DIFFICULTY_BANDS))
    for label, count, total in zip(
        DIFFICULTY_BANDS, prompts.tolist(), rollouts.tolist(), strict=True
    ):
        if count:
            increments[DIFFICULTY_PROMPTS_PREFIX + label] = count
            increments[DIFFICULTY_ROLLOUTS_PREFIX + label] = int(total)
    return increments


def summary_from_fields(step: int, fields: Mapping[str, int]) -> dict:
    """Turn a step's flat counter hash into a dict keyed like `StepSummary`."""
    summary: dict = {"step": step}
    for name in (*REPORT_SUMMARY_FIELDS, *ALLOCATION_SUMMARY_FIELDS):
        summary[name] = int(fields.get(name, 0))
    summary["budget_histogram"] = {
        label: int(fields[BUDGET_PREFIX + label])
        for label, _ in BUDGET_BUCKETS
        if BUDGET_PREFIX + label in fields
    }
    summary["difficulty_buckets"] = {
        label: {
            "prompts": int(fields[DIFFICULTY_PROMPTS_PREFIX + label]),
            "rollouts": int(fields.get(DIFFICULTY_ROLLOUTS_PREFIX + label, 0)),
        }
        for label in DIFFICULTY_BANDS
        if DIFFICULTY_PROMPTS_PREFIX + label in fields
    }
    return summary


__all__ = [
    "ALLOCATION_SUMMARY_FIELDS",
    "BUDGET_BUCKETS",
    "allocation_increments",
    "summary_from_fields",
]
