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
so the group's weight is signal / n_mean, n_mean the batch's mean group size.

How the signal grows with n is the one assumption that decides how much a
strategy gains by giving one prompt many rollouts, so it is an option
(`RETURNS`, see `effective_rollouts`):

- "linear" (n * std): the exact gradient of this logistic model. A group of 64
  moves its prompt 8 times as far as a group of 8 with the same mix, so extra
  rollouts help twice: more chances of a mixed group *and* a longer step.
- "sqrt" (sqrt(8 n) * std): equal to linear at n = 8, then growing like sqrt(n).
  Plausible for an LLM, where the rollouts of one prompt are correlated and a
  group's per-token gradients add up partly like noise: more rollouts buy a
  more precise direction more than a longer step.
- "capped" (min(n, 16) * std): linear up to 16 rollouts, flat beyond. Plausible
  where a per-prompt trust region (PPO's ratio clip, a bounded learning rate)
  limits how far one prompt can move in one update however many rollouts it got.

All three agree for n <= 8 (capped up to 16), so uniform at the base budget
runs identical dynamics under each; only strategies that spend more than 8
rollouts on a prompt feel the difference. Which one is closest to a real LLM is
an empirical question this simulator cannot answer: the demo reports both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knapsack_trainer.sim.dataset import PromptSet

#: How a group's signal grows with its size n (see the module docstring).
RETURNS: tuple[str, ...] = ("linear", "sqrt", "capped")
#: The group size at which every returns option gives the same signal.
REFERENCE_GROUP = 8
#: Beyond this many rollouts "capped" adds nothing.
RETURNS_CAP = 16


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


def check_returns(returns: str) -> str:
    """`returns` if it names one of `RETURNS`, else ValueError naming the choices."""
    if returns not in RETURNS:
        raise ValueError(f"returns must be one of {', '.join(RETURNS)}, got {returns!r}")
    return returns


def effective_rollouts(trials: np.ndarray, returns: str = "linear") -> np.ndarray:
    """The n that multiplies a group's std under each returns option.

    linear: n; sqrt: sqrt(REFERENCE_GROUP * n); capped: min(n, RETURNS_CAP).
    """
    n = np.asarray(trials, dtype=np.float64)
    kind = check_returns(returns)
    if kind == "sqrt":
        return np.sqrt(REFERENCE_GROUP * n)
    if kind == "capped":
        return np.minimum(n, float(RETURNS_CAP))
    return n


def group_signal(successes: np.ndarray, trials: np.ndarray, returns: str = "linear") -> np.ndarray:
    """Each group's signal: effective n times the std of its binary rewards.

    Args:
        successes: (groups,) int, k_i.
        trials: (groups,) int, n_i; 0 means the prompt was skipped.
        returns: "linear" (n * std, the exact GRPO gradient on the logit, i.e.
            sum_j A_j (r_j - p)), "sqrt" or "capped" (`effective_rollouts`).

    Returns:
        (groups,) float64; 0 for all-success, all-failure and skipped groups.

    """
    n = trials.astype(np.float64)
    q = np.divide(successes, n, out=np.zeros_like(n), where=n > 0)
    return effective_rollouts(n, returns) * np.sqrt(q * (1.0 - q))


class SkillModel:
    """The learner's state: the skill vector w, split into its three blocks."""

    def __init__(self, prompts: PromptSet, rates: LearningRates, returns: str = "linear") -> None:
        self.prompts = prompts
        self.rates = rates
        self.returns = check_returns(returns)
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

    def transfer_rates(self, other: PromptSet) -> np.ndarray:
        """True success of prompts never trained on (same topics): general + topic skill only.

        What the model has learnt that carries over to a held-out prompt of the same
        topic; the private skill (memorising a trained prompt) does not.
        """
        if other.topics != self.prompts.topics:
            raise ValueError("held-out prompts must share the training set's topics")
        return sigmoid(other.bias + self.general + self.topic_skill[other.topic])

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
        weight = group_signal(successes, trials, self.returns) / mean_group
        self.general += self.rates.general * float(weight.mean())
        topics = self.prompts.topic[index]
        per_topic = np.bincount(topics, weights=weight, minlength=self.prompts.topics)
        batch_share = len(index) / self.prompts.topics
        self.topic_skill += self.rates.topic * per_topic / batch_share
        np.add.at(self.private_skill, index, self.rates.private * weight)
