"""The GRPO worker end to end on CPU: tiny model, real in-process service."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from knapsack_trainer.worker import TrainConfig  # noqa: E402
from knapsack_trainer.worker.checkpoint import latest_checkpoint  # noqa: E402
from knapsack_trainer.worker.trainer import GRPOTrainer  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]

BUDGET = 24


def _config(model: Path, out: Path, **overrides) -> TrainConfig:
    values = {
        "model_path": str(model),
        "task": "target",
        "task_options": {"size": 12},
        "batch_size": 4,
        "budget": BUDGET,
        "run_id": "smoke",
        "learning_rate": 1e-2,
        "max_new_tokens": 2,
        "steps": 2,
        "seed": 1,
        "backend": "transformers",
        "output_dir": str(out),
        "progress": False,
        "tensorboard": False,
    }
    return TrainConfig(**{**values, **overrides})


def test_two_steps_then_resume_against_the_same_run_on_cpu(
    tiny_model_dir, tmp_path, service_client
):
    config = _config(tiny_model_dir, tmp_path)
    trainer = GRPOTrainer(config, service_client)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    history = trainer.train()
    assert [m["step"] for m in history] == [0, 1]
    for metrics in history:
        assert metrics["rollouts"] == BUDGET
        assert metrics["backend"] == "transformers"
        assert 0.0 <= metrics["effective_ratio"] <= 1.0
        assert metrics["groups"] == 4
        for key in ("loss", "kl", "clip_fraction", "time_allocate", "time_generate"):
            assert key in metrics
    # Seeded: step 0 has mixed groups, so the weights must move (a learner that
    # silently skipped its update would leave them equal).
    assert not history[0]["skipped"]
    changed = any(not torch.equal(initial[k], v) for k, v in trainer.model.state_dict().items())
    assert changed
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 1]
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.name == "step-00000002"
    saved_weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    next_batch = trainer.sampler.next_batch(4)
    trainer.close()

    resumed = GRPOTrainer(_config(tiny_model_dir, tmp_path, steps=3), service_client)
    assert resumed.start_step == 2
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, saved_weights[key]), key
    assert resumed.optimizer.state_dict()["state"], "optimiser state restored"
    more = resumed.train()
    assert [m["step"] for m in more] == [2]
    # The resumed run drew the batch an uninterrupted run would have drawn.
    summary = service_client.summary("smoke")
    assert [s.step for s in summary.steps] == [0, 1, 2]
    assert all(s.rollouts == BUDGET for s in summary.steps)
    lookup = service_client.lookup("smoke", next_batch)
    assert all(p.last_step == 2 for p in lookup.prompts)
    resumed.close()


def test_kl_and_seq_mean_loss_on_cpu(tiny_model_dir, tmp_path, service_client):
    config = _config(
        tiny_model_dir,
        tmp_path,
        steps=1,
        kl_coef=0.1,
        loss_agg_mode="seq-mean-token-mean",
        advantage_estimator="dr_grpo",
        ppo_epochs=2,
        strategy="uniform",
    )
    trainer = GRPOTrainer(config, service_client)
    (metrics,) = trainer.train()
    assert trainer.reference is not None
    assert metrics["strategy"] == "uniform"
    # The first epoch starts at the reference (KL exactly 0); the second starts from the
    # moved policy, so the mean over epochs is strictly positive when the KL term is
    # wired in. The values themselves are checked in test_policy_update_on_cpu.py.
    assert not metrics["skipped"]
    assert 0.0 < metrics["kl"] < 1.0
    assert math.isfinite(metrics["loss"])
    trainer.close()


def test_cli_train_with_yaml_and_overrides_on_cpu(tiny_model_dir, tmp_path, capsys):
    from knapsack_trainer.cli import main

    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        f"model_path: {tiny_model_dir}\nbackend: transformers\nbatch_size: 4\n"
        f"budget: 16\nsteps: 5\nprogress: false\ntensorboard: false\n"
    )
    out = tmp_path / "cli"
    # The embedded service (no service_url); overrides win over the file.
    assert main(["train", "--config", str(config_file), "steps=1", f"output_dir={out}"]) == 0
    assert "metrics in" in capsys.readouterr().out
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["rollouts"] == 16
