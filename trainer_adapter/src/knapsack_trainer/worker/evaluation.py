"""Held-out evaluation: success on prompts the policy never trains on.

Training-batch success says little about a strategy: knapsack and uniform see the
same prompts but spend rollouts differently, and each batch's mix of easy and hard
prompts is noise. Held-out success (same task and settings, a different generator
seed) is the number a user cares about: `samples` completions per prompt from the
current policy, a prompt's success the share that clears the threshold, the result
the mean over prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from knapsack_client.rules import DEFAULT_SUCCESS_THRESHOLD
from knapsack_trainer.worker.generation import GenerationBackend, GenerationRequest
from knapsack_trainer.worker.tasks import Task


@dataclass(frozen=True)
class HeldoutResult:
    """Success on the held-out prompts.

    Attributes:
        per_prompt: Share of each prompt's samples that succeeded, in prompt order.
        success: Mean of `per_prompt`.

    """

    per_prompt: list[float]

    @property
    def success(self) -> float:
        """Mean over prompts of their success rates."""
        return sum(self.per_prompt) / len(self.per_prompt) if self.per_prompt else 0.0


def heldout_success(
    backend: GenerationBackend,
    encode: Callable[[str], list[int]],
    task: Task,
    prompt_ids: Sequence[str],
    *,
    samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    success_threshold: float = DEFAULT_SUCCESS_THRESHOLD,
) -> HeldoutResult:
    """Sample `samples` completions of every held-out prompt in one call and score them.

    Args:
        backend: The generation engine, holding the current policy's weights.
        encode: Prompt text to token ids (the trainer's `prompt_tokens` rule).
        task: The held-out task (it scores completions).
        prompt_ids: The prompts to evaluate.
        samples: Completions per prompt (16 gives steps of 1/16 per prompt).
        max_new_tokens: As in training.
        temperature: As in training: held-out success of the sampling policy.
        top_p: As in training.
        seed: Sampling seed; pass the same one to every strategy at a given evaluation,
            so paired runs differ only by their weights.
        success_threshold: A reward at or above it is a success.

    """
    if samples < 1:
        raise ValueError("samples must be at least 1")
    request = GenerationRequest(
        prompt_token_ids=[encode(task.problem(prompt_id).prompt) for prompt_id in prompt_ids],
        counts=[samples] * len(prompt_ids),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    groups = backend.generate(request)
    per_prompt = []
    for prompt_id, completions in zip(prompt_ids, groups, strict=True):
        wins = sum(task.score(prompt_id, c.text) >= success_threshold for c in completions)
        per_prompt.append(wins / len(completions))
    return HeldoutResult(per_prompt)
