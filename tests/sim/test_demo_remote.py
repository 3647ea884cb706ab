"""`--url`: the same demo against a service on the network, storing in Redis."""

from __future__ import annotations

import json
from pathlib import Path

from knapsack_client import KnapsackClient
from knapsack_trainer.demo import main as demo_main


def test_demo_against_a_running_service_with_redis(redis_service_url: str, tmp_path: Path) -> None:
    out = tmp_path / "remote"
    args = ["--url", redis_service_url, "--out", str(out), "--seeds", "1", "--steps", "6"]
    args += ["--prompts", "256", "--batch-size", "64", "--strategies", "uniform,knapsack"]
    args += ["--processes", "1", "--quiet", "--no-plots", "--run-prefix", "remote-demo"]
    args += ["--diminishing", ""]
    assert demo_main(args) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["service"] == redis_service_url
    assert all(entry["degraded_steps"] == 0 for entry in summary["strategies"].values())
    with KnapsackClient(base_url=redis_service_url) as client:
        info = client.get_run("remote-demo-knapsack-s0")
        steps = client.summary("remote-demo-knapsack-s0").steps
    assert info.settings.strategy == "knapsack"
    assert info.counters.rollouts == 6 * 64 * 8
    assert [s.step for s in steps] == list(range(6))


def test_a_second_demo_on_the_same_service_gets_fresh_runs(
    redis_service_url: str, tmp_path: Path
) -> None:
    # Without --run-prefix, each demo against a URL uses new run ids, so it does
    # not inherit (or duplicate the report ids of) an earlier demo's runs.
    common = ["--url", redis_service_url, "--seeds", "1", "--steps", "3", "--prompts", "128"]
    common += ["--batch-size", "32", "--strategies", "knapsack", "--processes", "1"]
    common += ["--quiet", "--no-plots", "--diminishing", ""]
    for name in ("first", "second"):
        assert demo_main([*common, "--out", str(tmp_path / name)]) == 0
    first = json.loads((tmp_path / "first" / "summary.json").read_text())
    second = json.loads((tmp_path / "second" / "summary.json").read_text())
    assert first["strategies"]["knapsack"] == second["strategies"]["knapsack"]
