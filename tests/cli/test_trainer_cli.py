"""`knapsack-trainer`: one argparse grammar, the demo's options from `demo.main.add_arguments`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from knapsack_trainer.cli import build_parser


def test_demo_options_are_parsed_by_the_demo_grammar() -> None:
    args = build_parser().parse_args(
        ["--log-level", "info", "demo", "--out", "x/demo", "--steps", "2", "--quiet"]
    )
    assert args.log_level == "info"
    assert args.out == Path("x/demo") and args.steps == 2 and args.quiet
    assert args.seeds == 3  # the demo's own defaults come with its options


def test_a_wrong_demo_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["demo", "--steps", "two"])
    assert caught.value.code == 2
    assert "--steps" in capsys.readouterr().err


def test_demo_help_lists_the_demo_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--strategies" in out and "--out" in out


def test_train_never_imports_the_demo() -> None:
    code = (
        "import sys\n"
        "from knapsack_trainer.cli import build_parser\n"
        "args = build_parser().parse_args(['train', '--config', 'c.yaml', 'steps=1'])\n"
        "assert args.overrides == ['steps=1'], args\n"
        "print('knapsack_trainer.demo.main' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["False", "False"]
