"""A synthetic prompt set whose difficulty spread resembles a math RL dataset.

The paper (Fig. 2) trains on prompts of which many are out of reach at the
start (all rollouts fail), some are already easy, and a band in between is
where GRPO learns. The simulator needs exactly that spread: it is what makes
a uniform budget waste rollouts and what a knapsack allocation exploits.

Each prompt i has a latent difficulty `bias[i]` (a logit) and belongs to one
topic. Its features are implicit and sparse: a constant "general" feature,
a one-hot topic feature and a private one-hot feature, so the shared skill
vector w of `dynamics.SkillModel` splits into a general skill, one skill per
topic and a per-prompt part (what training on that very prompt teaches).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DifficultyMix:
    """A mixture of Gaussian difficulty logits: (weight, mean, std) per component.

    The default puts about half the prompts near p = 0 (logits around -6 to -4:
    a few percent success at best, so eight rollouts nearly always fail), a
    broad middle band, and a fifth of easy prompts.
    """

    components: tuple[tuple[float, float, float], ...] = (
        (0.22, -7.0, 1.5),  # far out of reach
        (0.28, -4.0, 1.0),  # rare successes: p around 1-5 %
        (0.30, -1.0, 1.5),  # the learnable middle
        (0.20, 2.5, 1.0),  # already easy
    )

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Draw `count` difficulty logits."""
        weights = np.array([c[0] for c in self.components], dtype=np.float64)
        weights /= weights.sum()
        which = rng.choice(len(self.components), size=count, p=weights)
        means = np.array([c[1] for c in self.components])[which]
        stds = np.array([c[2] for c in self.components])[which]
        return means + stds * rng.standard_normal(count)


@dataclass(frozen=True)
class PromptSet:
    """The dataset: ids, latent difficulty logits and topic of every prompt."""

    prompt_ids: tuple[str, ...]
    bias: np.ndarray  # (prompts,) float64, initial logit of each prompt's success
    topic: np.ndarray  # (prompts,) int64 in [0, topics)
    topics: int

    @property
    def size(self) -> int:
        """Number of prompts."""
        return len(self.prompt_ids)

    @classmethod
    def generate(
        cls,
        prompts: int,
        topics: int,
        rng: np.random.Generator,
        mix: DifficultyMix | None = None,
        prefix: str = "sim",
    ) -> PromptSet:
        """Draw a prompt set; everything comes from `rng`, so a seed fixes it.

        A held-out set is drawn the same way from another stream (same topics, same
        difficulty mix), with its own id `prefix`.
        """
        if prompts < 1 or topics < 1:
            raise ValueError("prompts and topics must be positive")
        bias = (mix or DifficultyMix()).sample(prompts, rng)
        topic = rng.integers(0, topics, size=prompts, dtype=np.int64)
        ids = tuple(f"{prefix}-{i:06d}" for i in range(prompts))
        return cls(prompt_ids=ids, bias=bias, topic=topic, topics=topics)
