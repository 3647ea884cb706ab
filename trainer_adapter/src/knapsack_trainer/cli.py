"""`knapsack-trainer`: command line of the trainer package.

Subcommands register themselves through one `_add_*_parser(subparsers)` hook each and
import their heavy dependencies lazily, so `knapsack-trainer demo` never imports torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="run the included GRPO worker",
        description="Train a causal LM with GRPO, rollouts allocated by knapsack-rl. "
        "Launch with torchrun for data parallelism.",
    )
    parser.add_argument("--config", help="YAML file of TrainConfig fields")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override a config field (dotted keys, YAML values), e.g. learning_rate=1e-5",
    )
    parser.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from knapsack_trainer.worker import load_config, run_training

    config = load_config(args.config, args.overrides)
    history = run_training(config)
    if history:
        last = history[-1]
        print(
            f"step {last['step']}: reward {last['reward_mean']:.3f}, "
            f"effective ratio {last['effective_ratio']:.3f}; metrics in "
            f"{config.output_dir}/metrics.jsonl"
        )
    return 0


def _add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    """`demo`: every argument goes to `knapsack_trainer.demo.main`, imported only when run.

    The demo owns its options (`knapsack-trainer demo --help` prints them); forwarding
    keeps this file small and `train` free of the demo's imports.
    """
    parser = subparsers.add_parser(
        "demo", help="simulate every strategy and write the report", add_help=False
    )
    parser.add_argument("demo_args", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from knapsack_trainer.demo.main import main as demo_main

    return demo_main([*args.demo_args, *args.extra_args])


def build_parser() -> argparse.ArgumentParser:
    """The `knapsack-trainer` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="knapsack-trainer")
    parser.add_argument("--log-level", default="warning", help="logging level (default warning)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(subparsers)
    _add_demo_parser(subparsers)
    return parser


def _command_index(argv: list[str]) -> int | None:
    """Index of the subcommand: the first word that is not a global option or its value."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--log-level":
            index += 2
        elif word.startswith("-"):
            index += 1
        else:
            return index
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `knapsack-trainer`."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    split = _command_index(argv)
    if split is not None and argv[split] == "demo":
        # The demo owns its options: hand it everything after `demo` untouched
        # (parse_known_args would split `--out DIR` from its value).
        args = parser.parse_args([*argv[:split], "demo"])
        args.demo_args, args.extra_args = argv[split + 1 :], []
    else:
        args = parser.parse_args(argv)
        args.extra_args = []
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
