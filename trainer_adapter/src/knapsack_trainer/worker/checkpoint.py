"""Checkpoints: policy weights, optimiser, step, sampler position and RNG states.

Layout under `<output_dir>/checkpoints/`: one `step-<k>/` folder per checkpoint with the
policy in `save_pretrained` form (so a checkpoint is also a model a backend can load,
and vLLM restarts from it) and `trainer_state.pt`; `latest` names the newest folder
and is replaced atomically last, so a crash mid-save leaves the previous one in use.
The service keeps its own statistics under the run id, so a resumed run continues
against the same run and its estimates; the step counter continues too, so report
ids (derived from run, step and worker) stay unique and a replayed step's report is
recognised as a duplicate.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "trainer_state.pt"
LATEST_FILE = "latest"


@dataclass
class TrainerState:
    """What besides the weights a resumed run needs."""

    step: int
    optimizer: dict[str, Any]
    sampler: dict[str, Any]
    run_id: str
    rng: dict[str, Any]


def checkpoint_root(output_dir: str | Path) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(output_dir) / "checkpoints"


def capture_rng_state() -> dict[str, Any]:
    """Python and torch RNG states (CUDA too when present)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what `capture_rng_state` saved."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    output_dir: str | Path, model: Any, tokenizer: Any, state: TrainerState
) -> Path:
    """Write a checkpoint for `state.step` and point `latest` at it (call on rank 0).

    Returns:
        The checkpoint folder.

    """
    root = checkpoint_root(output_dir)
    folder = root / f"step-{state.step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save(
        {
            "step": state.step,
            "optimizer": state.optimizer,
            "sampler": state.sampler,
            "run_id": state.run_id,
            "rng": state.rng,
        },
        folder / STATE_FILE,
    )
    pointer = root / f".{LATEST_FILE}.tmp"
    pointer.write_text(folder.name, encoding="utf-8")
    os.replace(pointer, root / LATEST_FILE)
    return folder


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    root = checkpoint_root(output_dir)
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        return None
    folder = root / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / STATE_FILE).is_file() else None


def load_trainer_state(folder: str | Path) -> TrainerState:
    """Read `trainer_state.pt` of a checkpoint folder."""
    # weights_only=False: the state holds Python RNG tuples, written by this worker.
    raw = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    return TrainerState(
        step=int(raw["step"]),
        optimizer=raw["optimizer"],
        sampler=raw["sampler"],
        run_id=str(raw["run_id"]),
        rng=raw["rng"],
    )
