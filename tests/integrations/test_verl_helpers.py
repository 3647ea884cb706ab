"""The verl integration's helpers that need no verl (the rest: test_verl_on_cpu.py)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from knapsack_trainer.integrations.verl import (  # noqa: E402
    group_results,
    keep_rows,
    prompt_ids_of,
    repeat_indices,
)

pytestmark = pytest.mark.torch


def test_repeat_indices_repeat_each_prompt_by_its_n_and_drop_zeros() -> None:
    assert repeat_indices([2, 0, 3, 1]).tolist() == [0, 0, 2, 2, 2, 3]
    with pytest.raises(ValueError):
        repeat_indices([1, -1])


def test_keep_rows_drops_the_same_rows_from_every_column() -> None:
    batch = {
        "input_ids": torch.arange(8).view(4, 2),
        "index": np.array(["a", "b", "c", "d"], dtype=object),
        "raw_prompt": ["pa", "pb", "pc", "pd"],
        "meta": "kept as is",
    }
    kept = keep_rows(batch, np.array([True, False, True, True]))
    assert kept["input_ids"].tolist() == [[0, 1], [4, 5], [6, 7]]
    assert kept["index"].tolist() == ["a", "c", "d"]
    assert kept["raw_prompt"] == ["pa", "pc", "pd"]
    assert kept["meta"] == "kept as is"


def test_group_results_group_scores_by_uid_and_skip_nan_and_unknown_uids() -> None:
    results = group_results(
        ["u1", "u2", "u1", "u3", "u2"],
        [1.0, 0.0, float("nan"), 1.0, 1.0],
        {"u1": "p1", "u2": "p2"},
    )
    assert results == [
        {"prompt_id": "p1", "rewards": [1.0]},
        {"prompt_id": "p2", "rewards": [0.0, 1.0]},
    ]


def test_prompt_ids_come_from_the_column_or_a_stable_hash() -> None:
    assert prompt_ids_of({"index": np.array([3, 4])}) == ["3", "4"]
    raw = {"raw_prompt": [[{"role": "user", "content": "x"}], [{"role": "user", "content": "y"}]]}
    first, second = prompt_ids_of(raw), prompt_ids_of(raw)
    assert first == second and first[0] != first[1]
