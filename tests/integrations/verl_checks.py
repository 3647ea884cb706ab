"""verl's own pieces against our uneven groups, on CPU, in verl's environment (issue 14 §3).

Run by `tests/integrations/test_verl_on_cpu.py` as
`.venv-verl/bin/python tests/integrations/verl_checks.py <service URL>` (verl 0.9.1
pins transformers below 5.11, so it cannot share the main environment). Checks:

1. the service's plan for a chunk is uneven, sums to prompts * n, and keeps min_n 2;
2. the legacy path's repeat by n (`knapsack_repeat`) gives every prompt n_i rows,
   the same rows in `gen_batch` and `batch`, and drops n = 0 prompts;
3. verl's `compute_grpo_outcome_advantage`, grouped by uid, equals the per-group
   GRPO advantage on those uneven groups;
4. a group of one gets its raw score as advantage in verl (why min_n stays 2);
5. per-uid scores reported to the service arrive per prompt;
6. `knapsack_sync` is a registered verl trainer.
Prints one JSON line and exits 0, or raises.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from verl import DataProto
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.trainer.ppo.v1 import get_trainer_cls

from knapsack_client import KnapsackClient
from knapsack_trainer.integrations import verl as integration

RUN = "verl-checks"
PROMPTS = [f"verl-{i}" for i in range(8)]
N = 4
EPSILON = 1e-6  # verl's default in compute_grpo_outcome_advantage


def reference_advantages(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-group (score - mean) / (std + eps), std unbiased; a singleton: score itself."""
    out = np.empty_like(scores)
    for group in np.unique(groups):
        members = groups == group
        values = scores[members]
        if values.size == 1:
            out[members] = values  # verl's mean 0, std 1 for a group of one
        else:
            out[members] = (values - values.mean()) / (values.std(ddof=1) + EPSILON)
    return out


def main(url: str) -> int:
    rng = np.random.default_rng(0)
    with KnapsackClient(base_url=url, token="") as client:
        client.ensure_run(
            RUN,
            {
                "default_n": N,
                "min_n": 2,
                "estimator": {"kind": "window", "window": 16, "min_observations": 2},
            },
        )
        successes = [0, 1, 2, 3, 4, 5, 6, 8]
        client.report(
            RUN,
            0,
            [
                {"prompt_id": p, "successes": k, "trials": 8}
                for p, k in zip(PROMPTS, successes, strict=True)
            ],
            worker="seed",
        )
        # 1. the plan of step 1
        counts = integration.plan_counts(client, RUN, 1, PROMPTS, N)
        assert counts.sum() == len(PROMPTS) * N, counts
        assert len(set(counts.tolist())) > 1, f"groups not uneven: {counts}"
        assert counts.min() >= 2, counts
        again = integration.plan_counts(client, RUN, 1, PROMPTS, N)
        assert again.tolist() == counts.tolist()  # one plan per step

        # 2. the legacy repeat by n, on real DataProtos
        uids = np.array([f"uid-{i}" for i in range(len(PROMPTS))], dtype=object)
        batch = DataProto.from_dict(
            tensors={"input_ids": torch.arange(len(PROMPTS)).unsqueeze(1).repeat(1, 3)},
            non_tensors={"uid": uids, "index": np.array(PROMPTS, dtype=object)},
        )
        gen_batch = batch.pop(batch_keys=["input_ids"])
        gen_rows, rows = integration.knapsack_repeat(gen_batch, batch, counts)
        assert len(gen_rows) == len(rows) == int(counts.sum())
        seen = rows.non_tensor_batch["uid"].tolist()
        for i, uid in enumerate(uids.tolist()):
            assert seen.count(uid) == counts[i]
        assert (
            gen_rows.batch["input_ids"][:, 0].numpy() == integration.repeat_indices(counts)
        ).all()
        with_zero = counts.copy()
        with_zero[0], with_zero[1] = 0, counts[0] + counts[1]
        _, dropped = integration.knapsack_repeat(gen_batch, batch, with_zero)
        assert "uid-0" not in dropped.non_tensor_batch["uid"].tolist()
        kept = integration.keep_rows(
            {"raw_prompt": list(PROMPTS), "index": np.array(PROMPTS, dtype=object)},
            with_zero > 0,
        )
        assert kept["raw_prompt"] == PROMPTS[1:] and kept["index"].tolist() == PROMPTS[1:]

        # 3. verl's GRPO advantage by uid on the uneven groups
        total = int(counts.sum())
        scores = rng.integers(0, 2, total).astype(np.float32)
        length = 5
        token_rewards = torch.zeros(total, length)
        token_rewards[:, -1] = torch.from_numpy(scores)
        mask = torch.ones(total, length)
        index = rows.non_tensor_batch["uid"]
        advantages, _ = compute_grpo_outcome_advantage(token_rewards, mask, index)
        expected = reference_advantages(scores, np.asarray(index.tolist()))
        got = advantages[:, 0].numpy()
        assert np.allclose(got, expected, atol=1e-5), (got, expected)

        # 4. a group of one: verl hands it its raw score
        single, _ = compute_grpo_outcome_advantage(
            torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0]]),
            torch.ones(3, 2),
            np.array(["a", "b", "b"], dtype=object),
        )
        assert abs(float(single[0, 0]) - 1.0) < 1e-4

        # 5. per-uid scores to the service, per prompt
        uid_to_prompt = dict(zip(uids.tolist(), PROMPTS, strict=True))
        before = {s.prompt_id: s.trials for s in client.lookup(RUN, PROMPTS).prompts}
        integration.report_scores(client, RUN, 1, index.tolist(), scores.tolist(), uid_to_prompt)
        after = {s.prompt_id: s.trials for s in client.lookup(RUN, PROMPTS).prompts}
        for i, prompt in enumerate(PROMPTS):
            assert after[prompt] - before[prompt] == counts[i], (prompt, before, after)

    # 6. the registered trainer
    trainer_cls = get_trainer_cls(integration.TRAINER_NAME)
    assert trainer_cls.__name__ == "KnapsackSyncTrainer"
    print(
        json.dumps({"counts": counts.tolist(), "rollouts": total, "trainer": trainer_cls.__name__})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
