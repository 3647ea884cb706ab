r"""verl with per-prompt rollout counts from a knapsack-rl service.

Written against verl 0.9.1 (which pins transformers below 5.11, so it lives in an
environment of its own: `make verl-venv`). Its pieces are checked on CPU there
(`tests/integrations/verl_checks.py`); verl's training loop itself needs Ray
workers, GPUs and vLLM or SGLang and was not run here.

Two ways in:

- **Sync mode, verl 0.8+** (`trainer.v1.trainer_mode=knapsack_sync`): verl's agent loop reads
  a per-prompt `__rollout_n__` (`AgentLoopWorkerTQ._run_prompt`, whose comment
  invites setting n per sample by difficulty). `KnapsackSyncTrainer`, registered
  under that name, asks the service for every dataloader chunk right after the
  chunk's uids are drawn and before the prompts are submitted, drops the prompts
  that got n = 0, writes `__rollout_n__` into the batch, and, once the advantage
  is computed, reports each prompt's scores (summed token-level scores per
  response, grouped by uid). GRPO already groups by uid
  (`compute_grpo_outcome_advantage(index=uid)`), so uneven groups need nothing
  else. Step = `global_steps`; every chunk is one plan (the service keeps it).
- **Legacy `RayPPOTrainer.fit`**: the official Knapsack RL code
  (liziniu/KnapsackRL, `ray_trainer.py`) replaces both
  `repeat(repeat_times=n, interleave=True)` calls, on `gen_batch` before
  generation and on `batch` after it, by one `select_idxs` with prompt i's row
  index repeated n_i times (prompts with n_i = 0 vanish), applied to both so
  the rows stay aligned, with uid set per prompt before the split.
  `knapsack_repeat(gen_batch, batch, counts)` does exactly that with counts from
  `plan_counts`; call `report_scores` after `compute_advantage`.

A group of one rollout gets its raw score as advantage in verl (mean 0, std 1 for
a singleton), not 0: keep the run's `min_n` at 2 (the default here) or mask such
groups.

GPU node (not run here), with the service reachable at `$KRL_URL`::

    python -m verl.trainer.main_ppo \
        trainer.v1.trainer_mode=knapsack_sync \
        algorithm.adv_estimator=grpo \
        actor_rollout_ref.rollout.n=8 \
        data.train_batch_size=256 \
        +knapsack.url=$KRL_URL +knapsack.run_id=qwen-math-grpo \
        +knapsack.prompt_id_key=index \
        ...   # model, data files and resources as for verl's GRPO examples

verl looks the trainer class up inside its `TaskRunnerV1` Ray actor, so the
registration must run in that process, not only in the driver: put a
`sitecustomize.py` holding `import knapsack_trainer.integrations.verl` in a folder on
`PYTHONPATH` on every node (Ray's worker processes inherit the environment), with
this package installed there (`pip install --no-deps -e client -e trainer_adapter`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from knapsack_client import KnapsackClient, ServiceUnavailable

logger = logging.getLogger("knapsack_trainer.integrations.verl")

#: verl versions whose pieces were checked on CPU (tests/integrations/verl_checks.py).
CHECKED_VERL_VERSIONS = ("0.9.1",)
#: Name of the registered trainer (`trainer.v1.trainer_mode=` on verl's command line).
TRAINER_NAME = "knapsack_sync"


def prompt_ids_of(batch: Mapping[str, Any], key: str = "index") -> list[str]:
    """A stable id per prompt: the dataset's `key` column, else a hash of the raw prompt."""
    if key in batch:
        return [str(value) for value in np.asarray(batch[key]).tolist()]
    raws = batch["raw_prompt"]
    return [
        hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:32]
        for raw in raws
    ]


def plan_counts(
    client: KnapsackClient,
    run_id: str,
    step: int,
    prompt_ids: Sequence[str],
    rollouts_per_prompt: int,
) -> np.ndarray:
    """n_i per prompt for one chunk, with budget `len(prompt_ids) * rollouts_per_prompt`."""
    answer = client.allocate(
        run_id, step, list(prompt_ids), budget=len(prompt_ids) * rollouts_per_prompt
    )
    counts = np.asarray([item.n for item in answer.allocations], dtype=np.int64)
    if counts.shape != (len(prompt_ids),):
        raise ValueError(f"{counts.shape[0]} counts for {len(prompt_ids)} prompts")
    return counts


def repeat_indices(counts: Sequence[int]) -> np.ndarray:
    """Row index of every rollout: prompt i repeated n_i times, in prompt order."""
    counts = np.asarray(counts, dtype=np.int64)
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    return np.repeat(np.arange(len(counts)), counts)


def knapsack_repeat(gen_batch: Any, batch: Any, counts: Sequence[int]) -> tuple[Any, Any]:
    """The legacy path's replacement of both `repeat(interleave=True)` calls.

    `gen_batch` and `batch` are the `DataProto`s of `RayPPOTrainer.fit` after the
    generation keys were popped (uid already set per prompt); both get the same
    rows, so the generated responses line up with `batch` as with `repeat`.
    """
    indices = repeat_indices(counts)
    return gen_batch.select_idxs(indices), batch.select_idxs(indices)


def keep_rows(batch: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """A collated dataloader batch without the rows where `keep` is False."""
    index = np.flatnonzero(keep)
    kept: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            kept[key] = value[torch.as_tensor(index)]
        elif isinstance(value, np.ndarray):
            kept[key] = value[index]
        elif isinstance(value, list):
            kept[key] = [value[i] for i in index]
        else:
            kept[key] = value
    return kept


def group_results(
    uids: Sequence[str], scores: Sequence[float], uid_to_prompt: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One result per prompt (`{"prompt_id", "rewards"}`) from per-response scores and uids."""
    grouped: dict[str, list[float]] = defaultdict(list)
    for uid, score in zip(uids, scores, strict=True):
        if uid in uid_to_prompt and score == score:
            grouped[uid].append(float(score))
    return [{"prompt_id": uid_to_prompt[uid], "rewards": values} for uid, values in grouped.items()]


def report_scores(
    client: KnapsackClient,
    run_id: str,
    step: int,
    uids: Sequence[str],
    scores: Sequence[float],
    uid_to_prompt: Mapping[str, str],
    worker: str = "verl",
) -> None:
    """Send a step's per-prompt scores; a late report stays in the client's journal."""
    results = group_results(uids, scores, uid_to_prompt)
    if not results:
        return
    try:
        client.report(run_id, step, results, worker=worker)
    except ServiceUnavailable as exc:
        logger.warning("step %d's report is late: %s", step, exc)


try:  # the trainer exists only where verl 0.8+ is installed
    import transfer_queue as tq
    from verl.trainer.ppo.v1 import register_trainer
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
    from verl.utils import tensordict_utils as tu
except ImportError:  # pragma: no cover - verl's own environment only
    PPOTrainerSync = None


if PPOTrainerSync is not None:

    @register_trainer(TRAINER_NAME)
    class KnapsackSyncTrainer(PPOTrainerSync):
        """verl's sync trainer with `__rollout_n__` per prompt from the service.

        Reads `knapsack.url`, `knapsack.run_id` and `knapsack.prompt_id_key` from the
        config (added with `+knapsack.<key>=` on the command line). verl picks this
        class by `trainer.v1.trainer_mode=knapsack_sync`, and branches on the mode
        being exactly `sync` inside (replay buffer, TransferQueue writes): the
        constructor sets it back to `sync`, so everything but the planning is verl's
        sync trainer.
        """

        def __init__(self, config):
            from omegaconf import open_dict

            with open_dict(config):
                config.trainer.v1.trainer_mode = "sync"
            super().__init__(config)

        def _knapsack(self) -> tuple[KnapsackClient, str, str]:
            if getattr(self, "_knapsack_client", None) is None:
                section = self.config.get("knapsack", {}) or {}
                self._knapsack_client = KnapsackClient(base_url=section.get("url"))
                self._knapsack_run_id = str(section.get("run_id", "verl"))
                self._knapsack_key = str(section.get("prompt_id_key", "index"))
                self._uid_to_prompt: dict[str, str] = {}
                n = int(self.config.actor_rollout_ref.rollout.n)
                self._knapsack_client.ensure_run(
                    self._knapsack_run_id, {"default_n": n, "min_n": 2}
                )
            return self._knapsack_client, self._knapsack_run_id, self._knapsack_key

        def _fetch_one_gen_batch(self):
            """Verl's fetch, plus the plan: n = 0 prompts dropped, `__rollout_n__` set."""
            client, run_id, key = self._knapsack()
            try:
                if self.train_dataloader_it is None:
                    self.train_dataloader_it = iter(self.train_dataloader)
                batch_dict = next(self.train_dataloader_it)
            except StopIteration:
                self.train_dataloader_it = iter(self.train_dataloader)
                batch_dict = next(self.train_dataloader_it)
            ids = prompt_ids_of(batch_dict, key)
            n = int(self.config.actor_rollout_ref.rollout.n)
            counts = plan_counts(client, run_id, int(self.global_steps), ids, n)
            keep = counts > 0
            batch_dict = keep_rows(batch_dict, keep)
            uids = [str(uuid.uuid4()) for _ in range(int(keep.sum()))]
            batch_dict["uid"] = np.array(uids, dtype=object)
            batch_dict["__rollout_n__"] = np.array(counts[keep].tolist(), dtype=object)
            kept_ids = [pid for pid, k in zip(ids, keep.tolist(), strict=True) if k]
            self._uid_to_prompt.update(zip(uids, kept_ids, strict=True))
            return tu.get_tensordict(batch_dict)

        def _compute_advantage(self, batch, metrics):
            """Verl's advantage, then each prompt's scores to the service."""
            batch = super()._compute_advantage(batch, metrics)
            client, run_id, _ = self._knapsack()
            data = tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid", "rm_scores"]
            )
            uids = [str(uid) for uid in data["uid"].tolist()]
            scores = [float(row.sum()) for row in data["rm_scores"].unbind(0)]
            report_scores(client, run_id, int(self.global_steps), uids, scores, self._uid_to_prompt)
            for uid in set(uids):
                self._uid_to_prompt.pop(uid, None)
            return batch


__all__ = [
    "CHECKED_VERL_VERSIONS",
    "TRAINER_NAME",
    "group_results",
    "keep_rows",
    "knapsack_repeat",
    "plan_counts",
    "prompt_ids_of",
    "repeat_indices",
    "report_scores",
]
