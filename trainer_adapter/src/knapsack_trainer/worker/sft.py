"""A short supervised warm start, as real pipelines run SFT before RL.

A randomly initialised model succeeds on almost nothing, so every GRPO group is all
wrong and no allocation can matter. A few hundred steps of teacher forcing on
(prompt, answer) pairs from part of the task distribution give a policy whose
per-prompt success spreads from 0 to 1, the regime in which the knapsack allocation
is meant to help. Only the answer tokens (and the end-of-sequence token) are trained.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch


def supervised_warm_start(
    model: Any,
    tokenizer: Any,
    examples: Sequence[tuple[str, str]],
    *,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Teacher-force `answer + eos` after each prompt for `steps` AdamW steps.

    Args:
        model: A causal LM (trained in place).
        tokenizer: Its tokenizer.
        examples: `(prompt, answer)` text pairs; each batch draws from them at random.
        steps: Optimiser steps.
        batch_size: Examples per step.
        learning_rate: AdamW learning rate.
        seed: Seed of the batch draws.

    Returns:
        The loss of every step (mean cross-entropy per answer token).

    """
    if not examples:
        raise ValueError("no examples to warm start on")
    rng = random.Random(seed)
    encoded = [
        (
            list(tokenizer(prompt)["input_ids"]),
            [*tokenizer(answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id],
        )
        for prompt, answer in examples
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    device = next(model.parameters()).device
    model.train()
    losses = []
    for _ in range(steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(batch_size)]
        width = max(len(p) + len(a) for p, a in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (prompt, answer) in enumerate(batch):
            sequence = prompt + answer
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            labels[row, len(prompt) : len(sequence)] = torch.tensor(answer)
            attention[row, : len(sequence)] = 1
        output = model(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            labels=labels.to(device),
        )
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
        losses.append(float(output.loss.detach()))
    return losses
