"""The example configurations shipped with the worker stay valid TrainConfig files."""

from __future__ import annotations

from pathlib import Path

import pytest

from knapsack_trainer.worker import load_config

EXAMPLES = sorted((Path(__file__).parents[2] / "trainer_adapter" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_config_loads_and_takes_overrides(path: Path) -> None:
    config = load_config(str(path), ["steps=3", "run_settings.max_n=32"])
    assert config.steps == 3
    assert config.run_settings["max_n"] == 32


def test_there_are_examples() -> None:
    assert EXAMPLES
