r"""Knapsack against uniform allocation at equal compute: real GRPO, paired seeds, held-out prompts.

Per seed, one setup shared by every strategy (the pairing): a reasoning-gym task
(`--task`, default `reasoning_gym:basic_arithmetic` with small operands), a training
set several times larger than a batch (so a prompt's estimate ages between visits, as
in the paper), held-out prompts from another generator seed, and one initial policy:
a tiny local model (built here, nothing downloaded) after a short supervised warm
start on a third, disjoint sample, so per-prompt success starts spread between 0 and
1. Then the included GRPO worker trains it once per strategy, each against its own
embedded knapsack-rl service, and every `--eval-every` steps samples `--eval-samples`
completions of each held-out prompt (the same sampling seed for every strategy).

Strategies: `uniform` at the budget B, `uniform-2x` at 2B, `knapsack` at B (the
paper's rule: `fallback: true` and the paper's estimator) and `knapsack-bayes` at B.

    python bench/train_compare.py --json                  # the default experiment
    python bench/train_compare.py --seeds 0 --steps 4 --dataset-size 16 --out /tmp/x
    python bench/train_compare.py --gpu --model Qwen/Qwen2.5-0.5B-Instruct \\
        --task reasoning_gym:gsm_symbolic                 # a GPU machine (not run here)

Writes, under `--out`: `results.jsonl` (one line per strategy and seed), `curves.csv`,
`heldout_success.png`, `effective_ratio.png` and `summary.json` (paired differences).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread: the tiny model's matrices are too small to split, and on a busy
# machine two OpenMP threads wait on each other; measured on the shared 2-core box,
# 100 warm-start steps took 3.9-7.4 s with one thread and 65 s with two.
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_compare_report as report

from knapsack_trainer.sim.strategies import BAYES_ESTIMATOR, LAST_VISIT
from knapsack_trainer.worker import TrainConfig
from knapsack_trainer.worker.evaluation import HeldoutResult, heldout_success
from knapsack_trainer.worker.generation import vllm_available
from knapsack_trainer.worker.service import connect_service
from knapsack_trainer.worker.tasks import build_task

#: The paper's rule: its fallback exactly (`fallback: true`) and its last-visit estimator.
PAPER_KNAPSACK_SETTINGS: dict[str, Any] = {"fallback": True, "estimator": LAST_VISIT}
#: knapsack-bayes with the estimator the simulator's sweep chose (BENCHMARKS.md, Demo).
BAYES_SETTINGS: dict[str, Any] = {"estimator": BAYES_ESTIMATOR}
#: Small operands: 1-digit sums are learnt in the warm start, 2-digit ones only partly.
DEFAULT_TASK_SETTINGS: dict[str, Any] = {
    "min_terms": 2,
    "max_terms": 2,
    "min_digits": 1,
    "max_digits": 2,
    "operators": ["+", "-"],
    "allow_parentheses": False,
    "allow_negation": False,
    "whitespace": "single",
}
#: Generator seeds of the three disjoint samples of a seed's setup.
TRAIN_SALT, HELDOUT_SALT, WARM_START_SALT = 1, 2, 3


@dataclass(frozen=True)
class Strategy:
    """One arm of the comparison: a service strategy at a multiple of the budget."""

    name: str
    service_strategy: str
    budget_factor: int
    run_settings: dict[str, Any]


def strategies(knapsack_settings: dict[str, Any]) -> dict[str, Strategy]:
    """The four arms, by name."""
    return {
        "uniform": Strategy("uniform", "uniform", 1, {}),
        "uniform-2x": Strategy("uniform-2x", "uniform", 2, {}),
        "knapsack": Strategy("knapsack", "knapsack", 1, dict(knapsack_settings)),
        "knapsack-bayes": Strategy("knapsack-bayes", "knapsack-bayes", 1, dict(BAYES_SETTINGS)),
    }


@dataclass
class SeedSetup:
    """What every strategy of one seed shares."""

    seed: int
    model_dir: str
    tokenizer_dir: str
    task_options: dict[str, Any]
    heldout_ids: list[str]
    warm_start_loss: float | None


def _task_options(args: argparse.Namespace, size: int, seed: int) -> dict[str, Any]:
    options = {"size": size, "seed": seed, **args.task_settings}
    if not args.gpu:
        options["answer_tag"] = None  # the tiny model answers directly
    elif "prompt_template" not in options:
        options["prompt_template"] = (
            "{question}\nThink briefly, then give only the final answer inside <answer></answer>."
        )
    return options


def generator_seed(seed: int, salt: int) -> int:
    """Disjoint generator seeds for a setup's training, held-out and warm-start samples."""
    return 1000 * seed + salt


def prepare_seed(args: argparse.Namespace, seed: int, work: Path) -> SeedSetup:
    """Build the seed's tasks and its initial policy (a warm-started tiny model)."""
    task_options = _task_options(args, args.dataset_size, generator_seed(seed, TRAIN_SALT))
    heldout_options = _task_options(args, args.heldout_size, generator_seed(seed, HELDOUT_SALT))
    train = build_task(args.task, **task_options)
    heldout = build_task(args.task, **heldout_options)
    if args.gpu:
        return SeedSetup(seed, args.model, args.model, task_options, heldout.prompt_ids, None)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from knapsack_trainer.worker.sft import supervised_warm_start
    from knapsack_trainer.worker.tiny_model import build_tiny_model

    warm_options = _task_options(
        args, args.warm_start_examples, generator_seed(seed, WARM_START_SALT)
    )
    warm = build_task(args.task, **warm_options)
    words = sorted({*train.vocabulary(), *heldout.vocabulary(), *warm.vocabulary()})
    folder = work / f"seed-{seed}" / "initial"
    build_tiny_model(folder, words=words, seed=seed, **args.model_shape)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    examples = [(warm.problem(i).prompt, warm.problem(i).answer) for i in warm.prompt_ids]
    losses = supervised_warm_start(
        model, tokenizer, examples, steps=args.warm_start_steps, seed=seed
    )
    model.save_pretrained(folder)
    return SeedSetup(
        seed,
        str(folder),
        str(folder),
        task_options,
        heldout.prompt_ids,
        sum(losses[-10:]) / len(losses[-10:]) if losses else None,
    )


def arm_config(args: argparse.Namespace, setup: SeedSetup, arm: Strategy, out: Path) -> TrainConfig:
    """The worker's configuration for one strategy of one seed."""
    return TrainConfig(
        model_path=setup.model_dir,
        tokenizer_path=setup.tokenizer_dir,
        task=args.task,
        task_options=setup.task_options,
        chat_template=args.gpu,
        batch_size=args.batch_size,
        budget=args.budget * arm.budget_factor,
        strategy=arm.service_strategy,
        run_id=f"compare-{arm.name}-{setup.seed}",
        run_settings=arm.run_settings,
        learning_rate=args.learning_rate,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        max_model_len=args.max_model_len,
        micro_batch_size=args.micro_batch_size,
        steps=args.steps,
        seed=setup.seed,
        backend=args.backend,
        vllm_kwargs=args.vllm_kwargs,
        output_dir=str(out),
        resume=False,
        progress=False,
        tensorboard=False,
    )


def run_arm(
    args: argparse.Namespace, setup: SeedSetup, arm: Strategy, work: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train one strategy from the seed's initial policy; return its summary and curve."""
    from knapsack_trainer.worker.distributed import init_distributed
    from knapsack_trainer.worker.trainer import GRPOTrainer

    out = work / f"seed-{setup.seed}" / arm.name
    config = arm_config(args, setup, arm, out)
    budget = config.budget
    heldout = build_task(
        args.task,
        **_task_options(args, args.heldout_size, generator_seed(setup.seed, HELDOUT_SALT)),
    )
    curve: list[dict[str, Any]] = []
    started = time.perf_counter()
    with connect_service(None, journal_path=out / "journal.jsonl") as client:
        # A single process; on a GPU machine this puts the learner on cuda:0.
        trainer = GRPOTrainer(config, client, init_distributed())
        client.ensure_run(config.run_id, config.run_settings_payload())
        spent = 0

        def evaluate(step: int) -> HeldoutResult:
            return heldout_success(
                trainer.backend,
                trainer.encode,
                heldout,
                setup.heldout_ids,
                samples=args.eval_samples,
                max_new_tokens=args.max_new_tokens,
                seed=setup.seed * 1_000_003 + step,  # the same for every strategy
            )

        initial = evaluate(0)
        curve.append({"step": 0, "rollouts_spent": 0, "heldout_success": initial.success})
        for step in range(args.steps):
            metrics = trainer.train_step(step)
            spent += metrics["rollouts"]
            done = step + 1
            value = None
            if done % args.eval_every == 0 or done == args.steps:
                value = evaluate(done).success
            curve.append(
                {
                    "step": done,
                    "rollouts_spent": spent,
                    "heldout_success": value,
                    "effective_ratio": metrics["effective_ratio"],
                    "train_prompt_success": metrics["prompt_success_rate"],
                    "rollouts": metrics["rollouts"],
                    "max_group_size": metrics["max_group_size"],
                    # Prompts whose group gave a gradient (not all equal rewards).
                    "mixed_groups": metrics["groups"] - metrics["zero_variance_groups"],
                    "degraded": metrics["degraded"],
                }
            )
        trainer.close()
    seconds = time.perf_counter() - started
    trained = [row for row in curve if row["step"] > 0]
    summary = {
        "strategy": arm.name,
        "seed": setup.seed,
        "budget": budget,
        "final_heldout_success": curve[-1]["heldout_success"],
        "initial_heldout_success": curve[0]["heldout_success"],
        "heldout_success_auc": report.success_auc(curve),
        "initial_heldout_spread": report.spread(initial.per_prompt),
        "mean_effective_ratio": sum(r["effective_ratio"] for r in trained) / max(1, len(trained)),
        "steps": len(trained),
        "rollouts_spent": spent,
        "rollouts_per_step": sorted({r["rollouts"] for r in trained}),
        "max_group_size": max((r["max_group_size"] for r in trained), default=0),
        "mean_mixed_groups": sum(r["mixed_groups"] for r in trained) / max(1, len(trained)),
        "degraded_steps": sum(bool(r["degraded"]) for r in trained),
        "seconds": seconds,
    }
    return summary, curve


def run_seed(
    job: tuple[argparse.Namespace, int, list[Strategy]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One seed: its setup, then every strategy from it (a worker process's unit)."""
    args, seed, arms = job
    results, curves = [], []
    with tempfile.TemporaryDirectory(prefix=f"train-compare-{seed}-") as folder:
        work = Path(folder)
        os.environ["TMPDIR"] = folder  # vLLM leaves socket files there
        setup = prepare_seed(args, seed, work)
        for arm in arms:
            summary, curve = run_arm(args, setup, arm, work)
            summary["warm_start_loss"] = setup.warm_start_loss
            results.append(summary)
            curves.extend({"strategy": arm.name, "seed": seed, **row} for row in curve)
    return results, curves


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--strategies", default="uniform,uniform-2x,knapsack,knapsack-bayes")
    add("--seeds", default="0,1,2,3", help="comma-separated seeds (paired across strategies)")
    add("--task", default="reasoning_gym:basic_arithmetic")
    add("--task-settings", type=json.loads, default=None, help="JSON: the generator's settings")
    add("--dataset-size", type=int, default=128, help="training prompts")
    add("--heldout-size", type=int, default=128)
    add("--batch-size", type=int, default=16, help="prompts per step")
    add("--budget", type=int, default=128, help="B: rollouts per step")
    add("--steps", type=int, default=60)
    add("--eval-every", type=int, default=5)
    add("--eval-samples", type=int, default=16)
    add("--learning-rate", type=float, default=1e-3)
    add("--max-new-tokens", type=int, default=5)
    add("--max-model-len", type=int, default=64)
    add("--micro-batch-size", type=int, default=256)
    add("--warm-start-steps", type=int, default=600)
    add("--warm-start-examples", type=int, default=512)
    add("--hidden-size", type=int, default=64)
    add("--layers", type=int, default=2)
    add("--knapsack-settings", type=json.loads, default=None, help="JSON run settings")
    add("--backend", default=None, help="transformers (default on CPU) or vllm")
    add("--gpu", action="store_true", help="a real model on a GPU with vLLM (see --model)")
    add("--model", default="Qwen/Qwen2.5-0.5B-Instruct", help="with --gpu: model name or path")
    add("--out", default=str(Path(__file__).with_name("train_compare")))
    add("--workers", type=int, default=2, help="seeds run in parallel (one process each)")
    add("--json", action="store_true", help="print one JSON line per strategy and seed")
    args = parser.parse_args(argv)
    if args.task_settings is None:
        default_task = args.task == "reasoning_gym:basic_arithmetic"
        args.task_settings = dict(DEFAULT_TASK_SETTINGS) if default_task else {}
    args.knapsack_settings = args.knapsack_settings or dict(PAPER_KNAPSACK_SETTINGS)
    args.model_shape = {"hidden_size": args.hidden_size, "num_layers": args.layers}
    args.vllm_kwargs = {}
    if args.gpu:
        # A real model: long answers, vLLM on the GPU, a small learning rate.
        args.backend = args.backend or "vllm"
        args.vllm_kwargs = {"gpu_memory_utilization": 0.35}
        if args.max_new_tokens == 5:
            args.max_new_tokens = 384
        args.max_model_len = max(args.max_model_len, 1024)
        if args.learning_rate == 1e-3:
            args.learning_rate = 1e-6
        args.micro_batch_size = min(args.micro_batch_size, 16)
    elif args.backend is None:
        args.backend = "transformers"
    if args.backend == "vllm" and not vllm_available():
        parser.error("--backend vllm: vllm is not installed")
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    arms = strategies(args.knapsack_settings)
    chosen = [arms[name] for name in args.strategies.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    started = time.perf_counter()
    workers = 1 if args.gpu else max(1, min(args.workers, len(args.seed_list)))
    jobs = [(args, seed, chosen) for seed in args.seed_list]
    if workers == 1:
        finished = map(run_seed, jobs)
    else:
        # Seeds are independent: one process per core (each with one torch thread).
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        finished = pool.map(run_seed, jobs)
    for seed_results, seed_curves in finished:  # in seed order
        results.extend(seed_results)
        curves.extend(seed_curves)
        for summary in seed_results:
            print(json.dumps(summary) if args.json else report.one_line(summary), flush=True)
    if workers > 1:
        pool.shutdown()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    with (out / "curves.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=report.CURVE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(curves)
    summary = report.summarize(results)
    summary["wall_seconds"] = time.perf_counter() - started
    summary["command"] = " ".join(["bench/train_compare.py", *(argv or sys.argv[1:])])
    summary["settings"] = {
        key: getattr(args, key)
        for key in (
            "task", "task_settings", "dataset_size", "heldout_size", "batch_size", "budget",
            "steps", "eval_every", "eval_samples", "learning_rate", "max_new_tokens",
            "warm_start_steps", "warm_start_examples", "model_shape", "backend", "gpu",
        )
    }  # fmt: skip
    summary["settings"]["run_settings"] = {arm.name: arm.run_settings for arm in chosen}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report.plot_heldout(curves, out / "heldout_success.png")
    report.plot_effective_ratio(curves, out / "effective_ratio.png")
    if not args.json:
        print(report.summary_text(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
