"""`bench/train_compare.py` at a tiny size: pairing, equal rollouts, output shape (not outcomes)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")

from bench import train_compare_report as report

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ["uniform", "uniform-2x", "knapsack", "knapsack-bayes"]
BUDGET = 8
STEPS = 3


@pytest.mark.slow
@pytest.mark.torch
def test_tiny_comparison_is_paired_spends_equal_rollouts_and_writes_every_output(tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(ROOT / "bench" / "train_compare.py"),
        "--seeds", "0,1",
        "--steps", str(STEPS),
        "--dataset-size", "8",
        "--heldout-size", "3",
        "--batch-size", "2",
        "--budget", str(BUDGET),
        "--eval-every", "2",
        "--eval-samples", "2",
        "--warm-start-steps", "2",
        "--warm-start-examples", "8",
        "--out", str(out),
        "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(r["seed"], r["strategy"]) for r in lines] == [
        (seed, name) for seed in (0, 1) for name in STRATEGIES
    ]
    required = {
        "strategy", "seed", "budget", "final_heldout_success", "heldout_success_auc",
        "mean_effective_ratio", "steps", "seconds",
    }  # fmt: skip
    for r in lines:
        assert required <= set(r), r
        budget = 2 * BUDGET if r["strategy"] == "uniform-2x" else BUDGET
        assert r["budget"] == budget
        # Equal rollouts per step: every step of every arm spent exactly its budget.
        assert r["rollouts_per_step"] == [budget]
        assert r["rollouts_spent"] == budget * STEPS
        assert r["steps"] == STEPS
        assert 0.0 <= r["final_heldout_success"] <= 1.0
    # Paired: per seed, every arm starts from the same weights on the same held-out
    # prompts with the same sampling seed, so the step-0 evaluation is identical.
    for seed in (0, 1):
        initial = {r["initial_heldout_success"] for r in lines if r["seed"] == seed}
        assert len(initial) == 1, initial
        spreads = {json.dumps(r["initial_heldout_spread"]) for r in lines if r["seed"] == seed}
        assert len(spreads) == 1

    assert [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()] == lines
    with (out / "curves.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == report.CURVE_COLUMNS
    assert len(rows) == 2 * len(STRATEGIES) * (STEPS + 1)
    evaluated = [int(r["step"]) for r in rows if r["heldout_success"] != ""]
    assert sorted(set(evaluated)) == [0, 2, 3]  # every 2 steps and the last
    for name in ("heldout_success.png", "effective_ratio.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["paired_vs_uniform"]) == {"uniform-2x", "knapsack", "knapsack-bayes"}
    knapsack = summary["paired_vs_uniform"]["knapsack"]["final_heldout_success"]
    assert len(knapsack["per_seed"]) == 2


def test_success_auc_is_the_trapezoid_mean_height():
    curve = [
        {"step": 0, "heldout_success": 0.2},
        {"step": 1, "heldout_success": None},
        {"step": 2, "heldout_success": 0.6},
        {"step": 4, "heldout_success": 0.6},
    ]
    # (2 * 0.4 + 2 * 0.6) / 4
    assert report.success_auc(curve) == pytest.approx(0.5)


def test_sign_test_and_paired_summary():
    assert report.sign_test_p(4, 0) == pytest.approx(0.125)
    assert report.sign_test_p(3, 1) == pytest.approx(0.625)
    assert report.sign_test_p(0, 0) == 1.0
    results = [
        {"strategy": name, "seed": seed, "final_heldout_success": value,
         "heldout_success_auc": value, "mean_effective_ratio": 0.5}
        for name, seed, value in [
            ("uniform", 0, 0.5), ("uniform", 1, 0.6),
            ("knapsack", 0, 0.7), ("knapsack", 1, 0.5),
        ]
    ]  # fmt: skip
    summary = report.summarize(results)
    diff = summary["paired_vs_uniform"]["knapsack"]["final_heldout_success"]
    assert diff["per_seed"] == pytest.approx([0.2, -0.1])
    assert diff["mean_difference"] == pytest.approx(0.05)
    assert (diff["wins"], diff["ties"], diff["losses"]) == (1, 0, 1)
    low, high = diff["bootstrap_95"]
    assert low == pytest.approx(-0.1) and high == pytest.approx(0.2)
    assert summary["means"]["uniform"]["final_heldout_success"] == pytest.approx(0.55)


def test_spread_counts_prompts_at_zero_one_and_between():
    assert report.spread([0.0, 0.5, 1.0, 1.0]) == {"p0": 0.25, "mixed": 0.25, "p1": 0.5}


def test_gpu_flag_configures_a_real_model_with_vllm_and_its_chat_template(tmp_path):
    # The GPU path is not run here (no GPU); its configuration is built and validated.
    pytest.importorskip("vllm")
    from bench import train_compare

    args = train_compare.parse_args(
        ["--gpu", "--task", "reasoning_gym:gsm_symbolic", "--seeds", "0", "--dataset-size", "8"]
    )
    setup = train_compare.prepare_seed(args, 0, tmp_path)
    arms = train_compare.strategies(args.knapsack_settings)
    config = train_compare.arm_config(args, setup, arms["knapsack"], tmp_path)
    assert config.model_path == "Qwen/Qwen2.5-0.5B-Instruct"
    assert config.backend == "vllm"
    assert config.chat_template is True
    assert config.max_new_tokens >= 256
    assert config.learning_rate == pytest.approx(1e-6)
    assert "gpu_memory_utilization" in config.vllm_kwargs
    assert "<answer>" in config.task_options["prompt_template"]
    assert "answer_tag" not in config.task_options  # the task's default: <answer> tags
    assert config.run_settings == {"fallback": True, "estimator": train_compare.LAST_VISIT}
    uniform_2x = train_compare.arm_config(args, setup, arms["uniform-2x"], tmp_path)
    assert uniform_2x.budget == 2 * config.budget
    assert len(setup.heldout_ids) == args.heldout_size
