"""`knapsack-trainer demo`: every strategy, three seeds, one table and six figures.

The demo starts the service in-process on its memory store (or uses `--url`),
runs the GRPO-dynamics simulator for each strategy and seed with a progress
bar, and writes `summary.json`, `metrics.csv`, `report.md` and the PNG figures
to the output folder before printing the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from knapsack_trainer.demo import plots, report
from knapsack_trainer.demo.run import DemoConfig, DemoResult, default_processes, make_jobs, run_all
from knapsack_trainer.sim.dynamics import RETURNS, check_returns
from knapsack_trainer.sim.runner import SimConfig
from knapsack_trainer.sim.strategies import (
    DEFAULT_STRATEGIES,
    OPTIONAL_STRATEGIES,
    strategy_by_name,
)


def run_demo(
    config: DemoConfig, *, progress: bool = True, stream: TextIO | None = None
) -> DemoResult:
    """Run the demo and write its files; returns every run's metrics.

    Args:
        config: What to run and where to write.
        progress: Show a tqdm bar over all steps of all runs (on stderr).
        stream: Where the final table goes (nothing printed when None).

    """
    started = time.perf_counter()
    jobs = make_jobs(config)
    processes = min(config.processes or default_processes(), len(jobs))
    total = len(jobs) * config.sim.steps
    bar = tqdm(total=total, desc="simulating", unit="step", disable=not progress, file=sys.stderr)
    try:
        results = run_all(jobs, processes, on_progress=bar.update)
    finally:
        bar.close()
    runs = {(job.name, job.seed): result for job, result in zip(jobs, results, strict=True)}
    labels: dict[str, report.RunLabel] = {}
    for job in jobs:
        labels.setdefault(job.name, report.RunLabel(job.name, job.spec, job.sim.returns))
    wall = time.perf_counter() - started
    outcome = DemoResult(config=config, runs=runs, wall_seconds=wall, labels=labels)
    summary = write_outputs(
        outcome, service="embedded (memory store)" if config.url is None else config.url
    )
    if stream is not None:
        stream.write(report.format_table(summary) + "\n")
        for key, value in summary["comparisons"].items():
            stream.write(f"{key}: {value:.3f}\n")
        stream.write(f"\nwrote {config.out_dir}/ in {time.perf_counter() - started:.1f} s\n")
    return outcome


def write_outputs(result: DemoResult, service: str) -> dict[str, Any]:
    """summary.json, metrics.csv, the figures and report.md; returns the summary."""
    config = result.config
    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {
        "config": {
            "prompts": config.sim.prompts,
            "topics": config.sim.topics,
            "batch_size": config.sim.batch_size,
            "steps": config.sim.steps,
            "heldout": config.sim.heldout,
            "returns": config.sim.returns,
            "diminishing": [r for r in config.diminishing if r != config.sim.returns],
            "base_budget": config.sim.base_budget,
            "seeds": list(config.seeds),
            "service": service,
        },
        "wall_seconds": result.wall_seconds,
    }
    epoch = max(1, config.sim.prompts // config.sim.batch_size)
    summary = report.build_summary(result.labels, result.runs, extra, first_epoch_steps=epoch)
    summary["comparisons"] = report.comparisons(summary)
    report.write_summary(out_dir / "summary.json", summary)
    report.write_metrics_csv(out_dir / "metrics.csv", result.runs)
    report.check_equal_spend(summary)
    figures = plots.write_all(result.runs, out_dir, config.sim.returns) if config.plots else {}
    report.write_report(out_dir / "report.md", summary, figures, result.labels)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared with the top-level CLI)."""
    defaults = SimConfig()
    parser.add_argument("--url", help="use a running service instead of the embedded one")
    parser.add_argument("--token", help="bearer token for --url (default: KRL_TOKEN)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per strategy")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--prompts", type=int, default=defaults.prompts)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--heldout", type=int, default=defaults.heldout, help="held-out prompts")
    parser.add_argument(
        "--returns",
        default=defaults.returns,
        choices=RETURNS,
        help="how a group's update grows with its size in the main runs",
    )
    parser.add_argument(
        "--diminishing",
        default="sqrt,capped",
        help="returns options to rerun --diminishing-strategies under ('' for none)",
    )
    parser.add_argument("--diminishing-strategies", default="knapsack,knapsack-bayes,coba")
    parser.add_argument(
        "--strategies",
        default=",".join(s.name for s in DEFAULT_STRATEGIES),
        help="comma-separated subset of: "
        + ", ".join(s.name for s in DEFAULT_STRATEGIES + OPTIONAL_STRATEGIES),
    )
    parser.add_argument("--processes", type=int, help="worker processes (default: one per core)")
    parser.add_argument("--run-prefix", help="run-id prefix on the service")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """A `DemoConfig` from parsed options."""
    sim = replace(
        SimConfig(),
        steps=args.steps,
        prompts=args.prompts,
        batch_size=args.batch_size,
        heldout=args.heldout,
        returns=args.returns,
    )
    names = _names(args.strategies)
    diminishing = tuple(_names(args.diminishing))
    for returns in diminishing:
        check_returns(returns)
    return DemoConfig(
        sim=sim,
        strategies=tuple(strategy_by_name(name) for name in names),
        diminishing=diminishing,
        diminishing_strategies=tuple(_names(args.diminishing_strategies)),
        seeds=tuple(range(args.seeds)),
        out_dir=args.out,
        url=args.url,
        token=args.token,
        processes=args.processes,
        run_prefix=args.run_prefix,
        plots=not args.no_plots,
    )


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point used by `knapsack-trainer demo`; returns the exit code."""
    try:
        config = config_from_args(args)
    except (KeyError, ValueError) as exc:
        print(f"knapsack-trainer demo: {exc}", file=sys.stderr)
        return 2
    run_demo(config, progress=not args.quiet, stream=sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m knapsack_trainer.demo`."""
    parser = argparse.ArgumentParser(prog="knapsack-trainer demo", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
