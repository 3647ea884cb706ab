"""Two gloo ranks against one service: identical weights, every rollout counted once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.torch, pytest.mark.slow]

BUDGET = 30  # 5 prompts x 6: an odd number of rollouts per rank would also be fine
STEPS = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_gloo_ranks_share_one_run_on_cpu(tiny_model_dir, tmp_path, service_url):
    from knapsack_client import KnapsackClient

    config = {
        "model_path": str(tiny_model_dir),
        "task": "target",
        "task_options": {"size": 10},
        "batch_size": 5,
        "budget": BUDGET,
        "run_id": "dp",
        "service_url": service_url,
        "learning_rate": 1e-2,
        "max_new_tokens": 2,
        "steps": STEPS,
        "seed": 3,
        "backend": "transformers",
        "output_dir": str(tmp_path / "out"),
        "progress": False,
        "tensorboard": False,
    }
    script = Path(__file__).with_name("dp_rank_main.py")
    port = str(_free_port())
    processes = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "TOKENIZERS_PARALLELISM": "false",
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(script), json.dumps(config), str(tmp_path / "weights")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    rank0 = torch.load(tmp_path / "weights.rank0", weights_only=False)
    rank1 = torch.load(tmp_path / "weights.rank1", weights_only=False)
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), key
    # The step did learn (not a skipped, trivially identical update).
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert any(not torch.equal(v, initial[k]) for k, v in rank0["weights"].items())
    assert any(m["skipped"] == 0.0 for m in rank0["history"])
    # Both ranks computed the same global metrics.
    assert [m["rollouts"] for m in rank0["history"]] == [BUDGET] * STEPS
    assert rank0["history"][0]["reward_mean"] == rank1["history"][0]["reward_mean"]

    with KnapsackClient(service_url, "") as client:
        info = client.get_run("dp")
        summary = client.summary("dp")
    assert info.counters.rollouts == BUDGET * STEPS
    assert info.counters.reports == 2 * STEPS  # one report per rank per step
    assert info.counters.allocations == STEPS  # rank 0 allocates once per step
    assert [s.rollouts for s in summary.steps] == [BUDGET] * STEPS
