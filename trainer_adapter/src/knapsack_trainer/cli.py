"""`knapsack-trainer`: command line of the trainer package.

Subcommands register themselves through one `_add_*_parser(subparsers)` hook each and
import their heavy dependencies lazily, so `knapsack-trainer demo` never imports torch
and `knapsack-trainer train` never imports the demo (its options are added on first use).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any


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


class _LazyOptionsParser(argparse.ArgumentParser):
    """A subcommand parser that adds its options the first time it parses or prints help.

    argparse builds every subcommand's parser up front; a subcommand whose options
    live with heavy code (the demo's come from `knapsack_trainer.demo.main`, which
    imports the simulator and matplotlib) would make every other command pay for
    that import. Deferring `add_options` to first use keeps `train` free of it.
    """

    def __init__(self, *args: Any, add_options: Callable[[], None] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self._add_options = add_options

    def _complete(self) -> None:
        if self._add_options is not None:
            add_options, self._add_options = self._add_options, None
            add_options()

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._complete()
        return super().format_help()


def _add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    """`demo`: the demo's own options (`demo.main.add_arguments`), added on first use."""

    def add_options() -> None:
        from knapsack_trainer.demo.main import add_arguments

        add_arguments(parser)

    parser = subparsers.add_parser(
        "demo",
        help="simulate every strategy and write the report",
        description="Simulate every strategy on the embedded service (or --url) and write "
        "the report.",
        add_options=add_options,
    )
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from knapsack_trainer.demo.main import run_from_args

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    """The `knapsack-trainer` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="knapsack-trainer")
    parser.add_argument("--log-level", default="warning", help="logging level (default warning)")
    subparsers = parser.add_subparsers(
        dest="command", required=True, parser_class=_LazyOptionsParser
    )
    _add_train_parser(subparsers)
    _add_demo_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `knapsack-trainer`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
