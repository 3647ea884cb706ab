"""The demo end to end on a small seeded configuration, and the paper's shape.

The shape assertions are the issue's, with margins: on this seeded run the
knapsack allocation must waste fewer rollouts than uniform at the same budget
(effective-gradient ratio at least 1.15x), learn at least as much, and come
within reach of uniform at twice the budget. Every strategy but the 2x
reference spends the same rollouts, and the diminishing-returns rerun shrinks
knapsack's gain while keeping its effective ratio.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from knapsack_trainer.demo import DemoConfig, run_demo
from knapsack_trainer.demo import main as demo_main
from knapsack_trainer.sim import DEFAULT_STRATEGIES, SimConfig

SMALL = SimConfig(prompts=1024, batch_size=128, steps=40, topics=16, heldout=256)
SEEDS = (0, 1)
RERUNS = ("coba", "knapsack", "knapsack-bayes")  # in the order of DEFAULT_STRATEGIES
LABELS = [spec.name for spec in DEFAULT_STRATEGIES] + [f"{name} [sqrt]" for name in RERUNS]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    config = DemoConfig(sim=SMALL, seeds=SEEDS, out_dir=out, processes=2, diminishing=("sqrt",))
    run_demo(config, progress=False)
    return out


def test_demo_writes_every_output(demo_dir: Path) -> None:
    names = {path.name for path in demo_dir.iterdir()}
    figures = {
        "effective_ratio.png",
        "budget_by_difficulty.png",
        "zero_gradient.png",
        "transitions.png",
        "mastered.png",
        "budget_efficiency.png",
        "success_curves.png",
    }
    assert {"summary.json", "metrics.csv", "report.md"} | figures <= names
    for figure in figures:
        assert (demo_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (demo_dir / "report.md").read_text()
    for figure in figures:
        assert f"]({figure})" in report
    assert "| knapsack |" in report and "| knapsack [sqrt] |" in report
    assert "What the success gain depends on" in report
    assert "cf. paper Fig. 7" in report and "what was assumed" in report

    with (demo_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(LABELS) * len(SEEDS) * SMALL.steps
    assert {(r["strategy"], r["seed"]) for r in rows} == {
        (name, str(seed)) for name in LABELS for seed in SEEDS
    }
    assert {"effective_ratio", "heldout_success", "mean_success", "hist_5-8"} <= set(rows[0])


def test_summary_has_the_contracted_fields(demo_dir: Path) -> None:
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert list(summary["strategies"]) == LABELS
    for name, entry in summary["strategies"].items():
        for key in (
            "budget",
            "mean_effective_ratio",
            "first_epoch_effective_ratio",
            "final_mean_success",
            "final_mean_success_sd",
            "final_heldout_success",
            "mastered_share",
            "never_solved_share",
            "band_transitions",
        ):
            assert key in entry, (name, key)
        assert entry["degraded_steps"] == 0
        assert 0.0 <= entry["mean_effective_ratio"] <= 1.0
        # Fig. 7's matrix holds every training prompt once per seed.
        assert sum(map(sum, entry["band_transitions"])) == SMALL.prompts * len(SEEDS)
        # Equal rollouts: every strategy at the base budget spent exactly as much.
        factor = 2 if name == "uniform-2x" else 1
        assert entry["rollouts_spent_by_seed"] == [factor * SMALL.base_budget * SMALL.steps] * 2
    assert summary["strategies"]["uniform-2x"]["budget"] == 2 * SMALL.base_budget
    assert summary["strategies"]["knapsack"]["budget"] == SMALL.base_budget


def test_knapsack_reproduces_the_papers_shape(demo_dir: Path) -> None:
    found = json.loads((demo_dir / "summary.json").read_text())["strategies"]
    knapsack, uniform, double = found["knapsack"], found["uniform"], found["uniform-2x"]
    assert knapsack["mean_effective_ratio"] >= 1.15 * uniform["mean_effective_ratio"]
    assert knapsack["final_mean_success"] >= uniform["final_mean_success"]
    assert knapsack["final_mean_success"] >= double["final_mean_success"] - 0.02
    # Everyone learns something, and the budget reaches the long tail (Fig. 5).
    for entry in found.values():
        assert entry["final_mean_success"] > entry["initial_mean_success"]
    assert knapsack["max_group"] > 16
    # Held-out prompts learn too, but less than the prompts trained on.
    for entry in found.values():
        assert entry["initial_heldout_success"] < entry["final_heldout_success"]
        assert entry["final_heldout_success"] < entry["final_mean_success"]


def test_diminishing_returns_keep_the_ratio_and_shrink_the_success_gain(demo_dir: Path) -> None:
    found = json.loads((demo_dir / "summary.json").read_text())["strategies"]
    uniform, linear, sqrt = found["uniform"], found["knapsack"], found["knapsack [sqrt]"]
    assert sqrt["returns"] == "sqrt" and linear["returns"] == "linear"
    assert sqrt["mean_effective_ratio"] >= 1.15 * uniform["mean_effective_ratio"]
    gain_linear = linear["final_mean_success"] - uniform["final_mean_success"]
    gain_sqrt = sqrt["final_mean_success"] - uniform["final_mean_success"]
    assert gain_sqrt < gain_linear


def test_command_line_runs_the_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = demo_main(
        [
            "--out",
            str(out),
            "--seeds",
            "1",
            "--steps",
            "4",
            "--prompts",
            "128",
            "--batch-size",
            "32",
            "--strategies",
            "uniform,knapsack",
            "--diminishing",
            "capped",
            "--processes",
            "1",
            "--quiet",
            "--no-plots",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "knapsack" in printed and "eff. ratio" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["strategies"]) == ["uniform", "knapsack", "knapsack [capped]"]
    assert summary["strategies"]["knapsack [capped]"]["returns"] == "capped"


def test_command_line_rejects_an_unknown_strategy(tmp_path: Path) -> None:
    code = demo_main(["--out", str(tmp_path), "--strategies", "greedy", "--quiet"])
    assert code == 2
    code = demo_main(["--out", str(tmp_path), "--diminishing", "log", "--quiet"])
    assert code == 2


def test_cli_passes_demo_options_with_separate_values(tmp_path: Path) -> None:
    from knapsack_trainer.cli import main

    out = tmp_path / "demo"
    code = main(
        [
            "--log-level",
            "warning",
            "demo",
            "--quiet",
            "--no-plots",
            "--steps",
            "2",
            "--prompts",
            "300",
            "--batch-size",
            "32",
            "--seeds",
            "1",
            "--strategies",
            "uniform,knapsack",
            "--diminishing",
            "",
            "--processes",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert (out / "summary.json").exists()
