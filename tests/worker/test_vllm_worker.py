"""The worker with the vLLM backend (CPU build, in-process engine)."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("vllm") is None:  # find, not import: collection stays fast
    pytest.skip("vllm is not installed", allow_module_level=True)

from knapsack_trainer.worker import TrainConfig  # noqa: E402
from knapsack_trainer.worker.trainer import GRPOTrainer  # noqa: E402

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.torch,
    pytest.mark.slow,
    # vLLM and torch.jit warn about their own internals on import and start-up.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]


def test_vllm_backend_three_steps_with_weight_sync(
    tiny_model_dir, tmp_path, vllm_environment, service_client
):
    config = TrainConfig(
        model_path=str(tiny_model_dir),
        task="target",
        task_options={"size": 16},
        batch_size=8,
        budget=48,
        run_id="vllm-smoke",
        learning_rate=1e-2,
        max_new_tokens=2,
        steps=3,
        seed=2,
        backend="vllm",
        output_dir=str(tmp_path / "out"),
        progress=False,
        tensorboard=False,
    )
    trainer = GRPOTrainer(config, service_client)
    history = trainer.train()
    trainer.close()
    assert [m["backend"] for m in history] == ["vllm"] * 3
    assert [m["rollouts"] for m in history] == [48] * 3
    assert any(not m["skipped"] for m in history[:-1]), "nothing was learned"
    assert any(not m["skipped"] for m in history[1:]), "no step after an update"
    # After each optimiser step the engine got the new weights, so the next step's
    # sampling log-probs match the learner's (the PPO ratio starts at 1); a stale
    # engine would sample from the old policy and this KL would be far from 0.
    for metrics in history:
        if not metrics["skipped"]:
            assert metrics["approx_kl"] < 1e-3, metrics
    summary = service_client.summary("vllm-smoke")
    assert [s.rollouts for s in summary.steps] == [48] * 3


def test_vllm_groups_of_different_sizes_in_one_call(tiny_model_dir, vllm_environment):
    from transformers import AutoTokenizer

    from knapsack_trainer.worker.generation import GenerationRequest, VllmBackend

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [tokenizer(text)["input_ids"] for text in ("1 pick 2 =", "pick 3 =", "pick 4 =")]
    backend = VllmBackend(str(tiny_model_dir), str(tiny_model_dir))
    groups = backend.generate(GenerationRequest(prompts, [5, 0, 1], max_new_tokens=3, seed=1))
    assert [len(g) for g in groups] == [5, 0, 1]
    for completion in groups[0] + groups[2]:
        assert 1 <= len(completion.token_ids) <= 3
        assert len(completion.log_probs) == len(completion.token_ids)
        assert all(lp <= 0.0 for lp in completion.log_probs)
    backend.close()
