"""GRPO learning dynamics on a logistic model of per-prompt success.

Prompt i succeeds with probability p_i = sigmoid(w · x_i + b_i). The features
x_i are sparse (see `dataset`): w = (general skill, one skill per topic, one
private coordinate per prompt), scaled so that each block has its own rate.

The update is GRPO's, reduced to this model. A group of n rollouts of prompt
i with k successes gets advantages A_j = (r_j - mean) / std, and the policy
gradient with respect to the prompt's logit is sum_j A_j (r_j - p_i), which
is exactly n * std (population std of the rewards, sqrt(q (1 - q)), q = k/n)
whatever p_i is. A group whose rollouts all succeed or all fail has std 0 and
contributes nothing: that is the waste the paper measures with the
effective-gradient ratio. The loss averages over all rollouts of the batch,
so the group's weight is n * std / n_mean, where n_mean is the batch's mean
group size: spending more rollouts on a prompt buys it more gradient only
through more chances of a mixed group, as in the paper's Value(N, p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knapsack_trainer.sim.dataset import PromptSet


@dataclass(frozen=True)
class LearningRates:
    """How far one unit of group signal moves each block of the skill vector.

    `general` moves every prompt's logit by `general` times the batch's mean
    signal; `topic` moves the prompts of a topic by `topic` times that topic's
    mean signal in the batch; `private` moves the prompt itself by `private`
    times its own signal (what an LLM "memorises" of a solved prompt).
    """

    general: float = 0.03
    topic: float = 0.12
    private: float = 0.5


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def group_signal(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """The signal n * std of each group's binary rewards (0 for all-success or all-failure).

    Args:
        successes: (groups,) int, k_i.
        trials: (groups,) int, n_i; 0 means the prompt was skipped.

    Returns:
        (groups,) float64, sum_j A_j (r_j - p) for GRPO's normalised advantages.

    """
    n = trials.astype(np.float64)
    q = np.divide(successes, n, out=np.zeros_like(n), where=n > 0)
    return n * np.sqrt(q * (1.0 - q))


class SkillModel:
    """The learner's state: the skill vector w, split into its three blocks."""

    def __init__(self, prompts: PromptSet, rates: LearningRates) -> None:
        self.prompts = prompts
        self.rates = rates
        self.general = 0.0
        self.topic_skill = np.zeros(prompts.topics, dtype=np.float64)
        self.private_skill = np.zeros(prompts.size, dtype=np.float64)

    def logits(self, index: np.ndarray | None = None) -> np.ndarray:
        """The logits w · x_i + b_i of the given prompts (all prompts when `index` is None)."""
        if index is None:
            return (
                self.prompts.bias
                + self.general
                + self.topic_skill[self.prompts.topic]
                + self.private_skill
            )
        return (
            self.prompts.bias[index]
            + self.general
            + self.topic_skill[self.prompts.topic[index]]
            + self.private_skill[index]
        )

    def success_rates(self, index: np.ndarray | None = None) -> np.ndarray:
        """True success probability p_i of the given prompts."""
        return sigmoid(self.logits(index))

    def grpo_step(self, index: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        """Apply one GRPO update from the batch's group outcomes.

        Args:
            index: (batch,) prompt indices of the batch.
            successes: (batch,) successes per prompt.
            trials: (batch,) rollouts per prompt (0 = skipped by the allocation).

        """
        total = int(trials.sum())
        if total == 0:
            return
        mean_group = total / len(index)
        weight = group_signal(successes, trials) / mean_group
        self.general += self.rates.general * float(weight.mean())
        topics = self.prompts.topic[index]
        per_topic = np.bincount(topics, weights=weight, minlength=self.prompts.topics)
        batch_share = len(index) / self.prompts.topics
        self.topic_skill += self.rates.topic * per_topic / batch_share
        np.add.at(self.private_skill, index, self.rates.private * weight)
