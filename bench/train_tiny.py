"""Show that the included GRPO worker learns: a tiny local model, knapsack vs uniform.

A random 2-layer Llama-style model (hidden 64, built locally: nothing is downloaded)
learns the `target` task ("4 1 pick 7 =" -> "7") by GRPO alone, once with knapsack
allocation and once with uniform allocation, at the same rollout budget and seed,
each against its own embedded knapsack-rl service. Prints a table (or, with `--json`,
one JSON line per strategy) and writes bench/TRAIN_RESULTS.md unless --no-write.

    python bench/train_tiny.py                 # both strategies, vLLM when installed
    python bench/train_tiny.py --backend transformers --steps 30 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from knapsack_trainer.worker import TrainConfig, run_training
from knapsack_trainer.worker.generation import vllm_available
from knapsack_trainer.worker.tasks import build_task
from knapsack_trainer.worker.tiny_model import build_tiny_model

RESULTS_FILE = Path(__file__).with_name("TRAIN_RESULTS.md")
#: Steps averaged for the initial and final success rates.
WINDOW = 3


def train_one(
    strategy: str, model_dir: Path, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    config = TrainConfig(
        model_path=str(model_dir),
        task="target",
        task_options={"size": args.prompts, "min_distractors": 0, "max_distractors": 3},
        batch_size=args.batch_size,
        budget=args.budget,
        strategy=strategy,
        run_id=f"tiny-{strategy}",
        learning_rate=args.learning_rate,
        max_new_tokens=1,
        steps=args.steps,
        seed=args.seed,
        backend=args.backend,
        output_dir=str(work / strategy),
        progress=not args.json,
        tensorboard=False,
        run_settings={"estimator": {"kind": "window", "window": 8, "min_observations": 4}},
    )
    started = time.perf_counter()
    history = run_training(config)
    wall = time.perf_counter() - started
    # Per-prompt success (mean over the step's prompts of each group's success rate):
    # the per-rollout rate would depend on where the strategy put its rollouts.
    success = [step["prompt_success_rate"] for step in history]
    return {
        "strategy": strategy,
        "backend": history[0]["backend"] if history else args.backend,
        "steps": len(history),
        "initial_success": sum(success[:WINDOW]) / min(WINDOW, len(success)),
        "final_success": sum(success[-WINDOW:]) / min(WINDOW, len(success)),
        "mean_effective_ratio": sum(s["effective_ratio"] for s in history) / len(history),
        # Median: the first run in a process pays the generation engine's one-time
        # warm-up inside its first step, which a mean would charge to its strategy.
        "seconds_per_step": statistics.median(s["time_step"] for s in history),
        "wall_seconds": wall,
        "success_curve": success,
        "effective_curve": [s["effective_ratio"] for s in history],
        "zero_variance_groups": sum(s["zero_variance_groups"] for s in history),
    }


def write_results(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    lines = [
        "# Tiny GRPO training: knapsack vs uniform allocation",
        "",
        f"Command: `python bench/train_tiny.py --backend {args.backend} --steps {args.steps} "
        f"--seed {args.seed}` on this machine (2 CPU cores, no GPU). Model: random "
        "2-layer Llama-style, hidden 64, 2 heads, word-level tokenizer, built locally. "
        f"Task `target` ({args.prompts} prompts, 0-3 distractor digits), "
        f"{args.batch_size} prompts and {args.budget} rollouts per step, "
        f"learning rate {args.learning_rate}, 1 new token, same seed for both runs.",
        "",
        "| strategy | backend | steps | initial success | final success | "
        "mean effective-gradient ratio | zero-variance groups | median s/step | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['strategy']} | {r['backend']} | {r['steps']} | {r['initial_success']:.3f} | "
            f"{r['final_success']:.3f} | {r['mean_effective_ratio']:.3f} | "
            f"{r['zero_variance_groups']} | {r['seconds_per_step']:.2f} | "
            f"{r['wall_seconds']:.0f} |"
        )
    lines += [
        "",
        f"Success: mean over a step's prompts of each group's success rate (a per-rollout "
        f"rate would depend on where each strategy spends rollouts); initial/final: mean "
        f"of the first/last {WINDOW} steps.",
        "",
    ]
    for r in results:
        curve = " ".join(f"{v:.2f}" for v in r["success_curve"])
        eff = " ".join(f"{v:.2f}" for v in r["effective_curve"])
        lines += [
            f"**{r['strategy']}** success per step: {curve}",
            "",
            f"**{r['strategy']}** effective-gradient ratio per step: {eff}",
            "",
        ]
    RESULTS_FILE.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="knapsack,uniform")
    parser.add_argument("--backend", default="vllm" if vllm_available() else "transformers")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--json", action="store_true", help="one JSON line per strategy")
    parser.add_argument("--no-write", action="store_true", help="do not write TRAIN_RESULTS.md")
    args = parser.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory(prefix="train-tiny-") as folder:
        work = Path(folder)
        os.environ["TMPDIR"] = folder  # vLLM leaves socket files there
        words = build_task("target").vocabulary()
        model_dir = build_tiny_model(work / "model", words=words, seed=args.seed)
        for strategy in args.strategies.split(","):
            results.append(train_one(strategy, model_dir, work, args))
    for r in results:
        if args.json:
            keys = (
                "strategy", "backend", "steps", "initial_success", "final_success",
                "mean_effective_ratio", "seconds_per_step",
            )  # fmt: skip
            print(json.dumps({key: r[key] for key in keys}))
        else:
            print(
                f"{r['strategy']:>9} {r['backend']:>12}: success {r['initial_success']:.2f} -> "
                f"{r['final_success']:.2f}, effective ratio {r['mean_effective_ratio']:.3f}, "
                f"{r['seconds_per_step']:.2f} s/step"
            )
    if not args.no_write:
        write_results(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
