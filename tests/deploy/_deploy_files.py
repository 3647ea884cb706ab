"""Shared helpers for the deployment tests: the repository's deploy files and a traffic driver."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "deploy" / "prometheus" / "rules" / "knapsack-rl.rules.yml"
RUN_ID = "deploy-test-run"


def load_deploy_check() -> ModuleType:
    """deploy/tools/deploy_check.py, which is a script rather than an installed package."""
    name = "deploy_check"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, REPO / "deploy" / "tools" / "deploy_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def drive_traffic(client: httpx.Client, steps: int = 1) -> None:
    """One solve, one run, and per step one allocation and one report (plus its duplicate).

    After this every labelled series the rules and the dashboard read has a sample:
    per-run gauges, difficulty buckets, solve and request histograms, report results.
    Step 1 reports prompt "mixed" with successes and failures and prompt "hard" with none,
    so the run's effective-gradient ratio is 0.5 and its all-failure share 0.5.
    """
    solve = client.post(
        "/v1/solve", json={"success_rates": [0.5, 0.0, 1.0, 0.25], "budget": 16, "min_n": 2}
    )
    assert solve.status_code == 200, solve.text
    # One outcome is enough for an estimate, so step 2 on allocates by difficulty, not default_n.
    settings = {"estimator": {"kind": "window", "window": 16, "min_observations": 1}}
    created = client.put(f"/v1/runs/{RUN_ID}", json=settings)
    assert created.status_code in (200, 201), created.text
    for step in range(1, steps + 1):
        allocation = client.post(
            f"/v1/runs/{RUN_ID}/allocations",
            json={"step": step, "prompts": ["mixed", "hard"], "budget": 16},
        )
        assert allocation.status_code == 200, allocation.text
        assert allocation.json()["degraded"] is False
        outcome = {
            "report_id": f"{RUN_ID}-step{step}-worker0",
            "step": step,
            "results": [
                {"prompt_id": "mixed", "successes": 2, "trials": 4},
                {"prompt_id": "hard", "successes": 0, "trials": 4},
            ],
        }
        first = client.post(f"/v1/runs/{RUN_ID}/outcomes", json=outcome)
        assert first.status_code == 200, first.text
        assert first.json()["duplicate"] is False
        again = client.post(f"/v1/runs/{RUN_ID}/outcomes", json=outcome)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
