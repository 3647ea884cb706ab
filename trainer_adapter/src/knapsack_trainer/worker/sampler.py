"""The sequence of prompt batches: shuffled epochs, resumable from a position."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


class PromptSampler:
    """Draws batches of prompt ids epoch by epoch, each epoch a fresh seeded shuffle.

    Every rank builds the same sampler from the same seed, so all ranks agree on a
    step's prompts without talking; `state_dict()` / `load_state_dict()` make a
    resumed run draw exactly the batches an uninterrupted one would.

    Args:
        prompt_ids: The task's prompt ids, in their fixed order.
        seed: Seed of the shuffles.

    """

    def __init__(self, prompt_ids: Sequence[str], seed: int = 0) -> None:
        if not prompt_ids:
            raise ValueError("no prompts to sample from")
        self.prompt_ids = list(prompt_ids)
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[str]:
        order = list(self.prompt_ids)
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next_batch(self, size: int) -> list[str]:
        """The next `size` distinct prompt ids (size is capped at the task's size)."""
        size = min(size, len(self.prompt_ids))
        batch: list[str] = []
        while len(batch) < size:
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._shuffled(self.epoch)
            candidate = self._order[self.position]
            self.position += 1
            if candidate not in batch:
                batch.append(candidate)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Position in the stream of batches."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._shuffled(self.epoch)
