"""A short chaos run: every fault kind at least once, and every outcome counted exactly once.

Two trainers of two rank processes each (every rank asks for each step's plan on its
own, and all must get the same one), two `knapsack-service serve` processes and one
redis-server with `appendfsync always`, for about 30 seconds, while the chaos
loop SIGKILLs a service, SIGKILLs Redis, SIGSTOPs Redis past the service's
timeout and SIGKILLs a trainer mid-report (`chaos_harness.py`; the full run is
`bench/chaos.py`). With `always`, an acknowledged report is on disk, so the
totals in Redis must equal the trainers' ground truth exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.reliability.chaos_harness import FAULT_KINDS, ChaosConfig, run_scenario

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_chaos_always_counts_every_outcome_once(tmp_path: Path) -> None:
    config = ChaosConfig(
        seconds=30.0,
        fsync="always",
        trainers=2,
        ranks=2,
        seed=1,
        gap_seconds=(0.2, 0.5),
        workdir=str(tmp_path),
    )

    result = run_scenario(config)

    summary = result.to_dict()
    assert set(FAULT_KINDS) <= set(result.faults), summary
    assert result.reports > 0 and result.steps > 0, summary
    assert result.lost_reports == 0, summary
    assert result.lost_outcomes == 0, summary
    assert result.double_counted_outcomes == 0, summary
    assert result.unexpected_reports == 0, summary
    assert result.failed_steps == 0, summary
    assert result.pending_at_end == 0, summary
    assert result.counters["reports"] == result.reports, summary
    assert result.counters["rollouts"] == result.outcomes, summary
    assert result.notes == [], summary
    assert result.plan_steps_checked > 0, summary
    assert result.plan_disagreements == 0, summary
