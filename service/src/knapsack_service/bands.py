"""Difficulty bands of an estimated success rate: the one definition every layer uses.

The paper's Fig. 5 splits the budget by difficulty. The step summaries (`/summary`,
written by the store) and the Prometheus counters (`krl_*_by_difficulty`) both count
allocations per band, so both take the band index from `difficulty_band`: before
this module they disagreed at p = 0.2, 0.4, 0.6 and 0.8, exactly where window
estimates such as k/5 land.

Bands are right-closed: (0, 0.2], (0.2, 0.4], (0.4, 0.6], (0.6, 0.8], (0.8, 1);
the exact 0 and 1 get their own band (GRPO learns nothing from them, paper Fig. 2).
"""

from __future__ import annotations

import numpy as np

#: Band labels of the step summaries, in band-index order.
DIFFICULTY_BANDS: tuple[str, ...] = (
    "unseen",
    "0",
    "(0,0.2]",
    "(0.2,0.4]",
    "(0.4,0.6]",
    "(0.6,0.8]",
    "(0.8,1)",
    "1",
)
#: The same bands as Prometheus label values (no brackets or commas), same order.
DIFFICULTY_METRIC_LABELS: tuple[str, ...] = (
    "unseen",
    "p0",
    "p0_20",
    "p20_40",
    "p40_60",
    "p60_80",
    "p80_100",
    "p1",
)
#: Upper edges of the inner bands; `searchsorted(side="left")` makes them right-closed.
_INNER_EDGES = np.array([0.2, 0.4, 0.6, 0.8], dtype=np.float64)


def difficulty_band(p_hat: np.ndarray) -> np.ndarray:
    """Band index (into `DIFFICULTY_BANDS`) of each estimate; NaN means unseen."""
    p = np.asarray(p_hat, dtype=np.float64)
    unseen = np.isnan(p)
    rate = np.where(unseen, 0.5, p)
    inner = 2 + np.searchsorted(_INNER_EDGES, rate, side="left")
    band = np.where(rate <= 0.0, 1, np.where(rate >= 1.0, 7, inner))
    return np.where(unseen, 0, band).astype(np.int64)


__all__ = ["DIFFICULTY_BANDS", "DIFFICULTY_METRIC_LABELS", "difficulty_band"]
