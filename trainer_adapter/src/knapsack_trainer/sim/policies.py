"""Baselines that live in the trainer loop, not in the budget service.

Each is a `runner.StepPolicy` that spends exactly the step's budget (the
runner checks it), so every strategy of the demo compares at equal rollouts.

- `DynamicSamplingPolicy`: DAPO's dynamic sampling (Yu et al., 2025), as the
  DAPO recipe in verl does it (`filter_groups`): roll out a generation batch,
  drop the groups whose rewards all agree (std 0), keep generating until the
  training batch holds `batch_size` mixed groups, truncate it to that, and only
  then take a GRPO step. Here one generation batch is the step's batch (256
  prompts x 8 rollouts, the base budget), so DAPO spends the same rollouts per
  step as everyone else and updates less often: every second or third step
  early on. Assumptions: the groups kept beyond a full batch are dropped (the
  recipe truncates); after `max_generation_batches` (10, the recipe's usual
  setting) a partial batch is learnt from; the last step learns from whatever is
  pending, so no run ends with rollouts it never used.
- `MoppsPolicy`: MoPPS (Qu et al., 2025, arXiv 2507.04632): a Beta posterior per
  prompt, discounted at each update, and Thompson sampling to pick the batch.
  Each step draws `candidate_ratio` x batch candidates, samples a success rate
  from each posterior and trains on the batch whose samples lie closest to the
  target 0.5, with the base group size each (uniform). After the step, each
  trained prompt's posterior becomes a <- lam a + (1 - lam) a0 + k,
  b <- lam b + (1 - lam) b0 + (n - k) with the prior a0 = b0 = 1.
  Assumptions (the stored paper text did not give them): lam = 0.5 and a
  candidate ratio of 4; untrained candidates keep their posterior unchanged.
- `CobaPolicy`: CoBA-RL's allocation (`knapsack_service.engine.strategies.coba`) with the
  state its code keeps in the trainer: each prompt's success rate at its last
  visit (sliding window of 1, their run script) and the global failure rate of
  the previous step (one minus the mean of that step's per-prompt rates).
  The service keeps no run-level capability, so the loop computes it and calls
  the engine's pure function directly instead of going over HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from knapsack_service.engine.strategies.coba import CobaParams, coba_allocate
from knapsack_trainer.sim.runner import Groups, Rollouts, StepPlay

#: MoPPS's target success rate: the prompts most informative for GRPO.
MOPPS_TARGET = 0.5


def spread(total: int, count: int) -> np.ndarray:
    """`total` rollouts evenly over `count` groups, the remainder to the first ones."""
    n = np.full(count, total // count, dtype=np.int64)
    n[: total % count] += 1
    return n


def mixed(groups: Groups) -> np.ndarray:
    """Mask of the groups with both a success and a failure (non-zero reward std)."""
    return (groups.successes > 0) & (groups.successes < groups.trials)


class DynamicSamplingPolicy:
    """DAPO's dynamic sampling at equal rollouts (see the module docstring)."""

    spends_budget = True

    def __init__(self, steps: int, max_generation_batches: int = 10) -> None:
        self.steps = steps
        self.max_generation_batches = max_generation_batches
        self.pending: list[Groups] = []
        self.generation_batches = 0

    def play(
        self,
        step: int,
        batch: np.ndarray,
        prompt_ids: Sequence[str],
        budget: int,
        rollouts: Rollouts,
    ) -> StepPlay:
        """Roll the batch at the base group size; learn once a batch of mixed groups is pooled."""
        trials = spread(budget, len(batch))
        successes = rollouts.roll(batch, trials)
        generated = Groups(batch, successes, trials)
        self.pending.append(generated.take(mixed(generated)))
        self.generation_batches += 1
        kept = Groups.concat(self.pending)
        full = len(kept) >= len(batch)
        last = step == self.steps - 1
        if not (full or last or self.generation_batches >= self.max_generation_batches):
            return StepPlay(Groups.empty())
        self.pending = []
        self.generation_batches = 0
        return StepPlay(kept.take(np.arange(min(len(kept), len(batch)))))


class MoppsPolicy:
    """MoPPS: discounted Beta posteriors and Thompson-sampled prompt selection."""

    spends_budget = True

    def __init__(
        self,
        prompts: int,
        seed: int,
        *,
        discount: float = 0.5,
        candidate_ratio: int = 4,
        prior: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        if not 0.0 <= discount <= 1.0:
            raise ValueError("discount must lie in [0, 1]")
        if candidate_ratio < 1:
            raise ValueError("candidate_ratio must be at least 1")
        self.discount = discount
        self.candidate_ratio = candidate_ratio
        self.prior = prior
        self.a = np.full(prompts, prior[0], dtype=np.float64)
        self.b = np.full(prompts, prior[1], dtype=np.float64)
        self.rng = np.random.default_rng([seed, 101])

    def select(self, candidates: np.ndarray, count: int) -> np.ndarray:
        """The `count` candidates whose posterior sample is closest to the target."""
        sampled = self.rng.beta(self.a[candidates], self.b[candidates])
        order = np.argsort(np.abs(sampled - MOPPS_TARGET), kind="stable")
        return candidates[order[:count]]

    def update(self, index: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        """The discounted conjugate update of the trained prompts' posteriors."""
        lam = self.discount
        a0, b0 = self.prior
        self.a[index] = lam * self.a[index] + (1.0 - lam) * a0 + successes
        self.b[index] = lam * self.b[index] + (1.0 - lam) * b0 + (trials - successes)

    def play(
        self,
        step: int,
        batch: np.ndarray,
        prompt_ids: Sequence[str],
        budget: int,
        rollouts: Rollouts,
    ) -> StepPlay:
        """Select the batch from fresh candidates by Thompson sampling; roll 8 each; update."""
        size = len(batch)
        candidates = rollouts.candidates(self.candidate_ratio * size)
        chosen = self.select(candidates, size)
        trials = spread(budget, len(chosen))
        successes = rollouts.roll(chosen, trials)
        self.update(chosen, successes, trials)
        return StepPlay(Groups(chosen, successes, trials))


class CobaPolicy:
    """CoBA-RL's allocation with its trainer-side state (see the module docstring)."""

    spends_budget = True

    def __init__(self, prompts: int, params: CobaParams | None = None) -> None:
        self.params = params or CobaParams()
        self.last_rate = np.full(prompts, np.nan, dtype=np.float64)
        #: Global failure rate of the previous step; before any step CoBA's
        #: initial shape (a, b) = (S - 2, 2) corresponds to f = (S - 3) / (S - 2).
        s = self.params.beta_sum
        self.failure_rate = (s - 3.0) / (s - 2.0)

    def play(
        self,
        step: int,
        batch: np.ndarray,
        prompt_ids: Sequence[str],
        budget: int,
        rollouts: Rollouts,
    ) -> StepPlay:
        """Allocate with CoBA on last-visit rates; roll; update the rates and the capability."""
        trials = coba_allocate(self.last_rate[batch], budget, self.failure_rate, self.params)
        successes = rollouts.roll(batch, trials)
        played = trials > 0
        rates = successes[played] / trials[played]
        self.last_rate[batch[played]] = rates
        if rates.size:
            self.failure_rate = float(1.0 - rates.mean())
        return StepPlay(Groups(batch, successes, trials))
