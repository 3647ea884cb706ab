"""The policy update on a real tiny model, against log-probs computed one sequence at a time.

The update pads rollouts of different prompt and response lengths into one batch and
gathers each response token's logit; the expected values here come from an unpadded
forward pass per sequence, so a wrong offset, a padding leak or a mis-scaled KL term
changes the loss, the KL or the clip fraction this test checks.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from knapsack_trainer.worker import TrainConfig  # noqa: E402
from knapsack_trainer.worker.distributed import DistContext  # noqa: E402
from knapsack_trainer.worker.generation import Completion  # noqa: E402
from knapsack_trainer.worker.policy_update import PolicyUpdate, Rollout  # noqa: E402
from knapsack_trainer.worker.tiny_model import build_tiny_model  # noqa: E402

pytestmark = pytest.mark.torch

TEMPERATURE = 0.7
KL_COEF = 0.5
#: Per rollout: prompt, response, advantage, ratio new/old the rollout is given.
CASES = [
    ([1, 5, 6, 7], [8, 9], 1.0, 1.1),  # A > 0, ratio inside the clip range
    ([1, 7], [5, 6, 10], -1.0, 0.7),  # A < 0, ratio below 0.8: clipped
    ([1, 9, 9, 9, 9], [11], 0.5, 1.0),
]


def _unpadded_log_probs(model, prompt: list[int], response: list[int]) -> list[float]:
    """Log-probs of the response tokens from a forward pass over this sequence alone."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0]
    values = []
    for t, token in enumerate(response):
        row = torch.log_softmax(logits[len(prompt) - 1 + t] / TEMPERATURE, dim=-1)
        values.append(float(row[token]))
    return values


def test_loss_kl_and_clip_fraction_match_a_per_sequence_computation(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    reference_dir = build_tiny_model(tmp_path / "reference", seed=1)
    reference = AutoModelForCausalLM.from_pretrained(reference_dir, dtype=torch.float32)
    reference.eval().requires_grad_(False)
    config = TrainConfig(
        model_path=str(tiny_model_dir),
        temperature=TEMPERATURE,
        kl_coef=KL_COEF,
        learning_rate=1e-3,
        max_grad_norm=None,
        clip_ratio=0.2,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    update = PolicyUpdate(
        model, optimizer, config, DistContext(), pad_token_id=0, reference=reference
    )

    prompts, rollouts, expected_loss, expected_kl, tokens = [], [], 0.0, 0.0, 0
    for index, (prompt, response, advantage, ratio) in enumerate(CASES):
        current = _unpadded_log_probs(model, prompt, response)
        ref = _unpadded_log_probs(reference, prompt, response)
        old = [value - math.log(ratio) for value in current]
        prompts.append(prompt)
        rollouts.append(Rollout(index, Completion(response, old, ""), reward=0.0))
        clipped = min(max(ratio, 0.8), 1.2)
        expected_loss += len(response) * max(-advantage * ratio, -advantage * clipped)
        # k3 = exp(ref - p) - (ref - p) - 1 per token.
        expected_kl += sum(math.exp(q - p) - (q - p) - 1 for p, q in zip(current, ref, strict=True))
        tokens += len(response)
    advantages = torch.tensor([case[2] for case in CASES])
    before = _unpadded_log_probs(model, CASES[0][0], CASES[0][1])

    metrics = update.learn(prompts, rollouts, advantages)

    kl = expected_kl / tokens
    assert kl > 1e-3  # the reference really differs, so a dropped KL term would show
    assert metrics["kl"] == pytest.approx(kl, rel=1e-4)
    assert metrics["loss"] == pytest.approx(expected_loss / tokens + KL_COEF * kl, rel=1e-4)
    assert metrics["clip_fraction"] == pytest.approx(3 / 6)  # the 3 tokens of rollout 1
    approx_kl = (2 * -math.log(1.1) + 3 * -math.log(0.7)) / tokens
    assert metrics["approx_kl"] == pytest.approx(approx_kl, rel=1e-4)
    assert metrics["skipped"] == 0.0
    # One SGD step on a positive, unclipped advantage makes that response more likely.
    after = _unpadded_log_probs(model, CASES[0][0], CASES[0][1])
    assert sum(after) > sum(before)


def test_zero_advantages_without_kl_skip_the_step(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(model_path=str(tiny_model_dir))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    update = PolicyUpdate(model, optimizer, config, DistContext(), pad_token_id=0)
    rollouts = [Rollout(0, Completion([5, 6], [-1.0, -1.0], ""), 1.0) for _ in range(2)]
    metrics = update.learn([[1, 2], [1, 2]], rollouts, torch.zeros(2))
    assert metrics == {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "skipped": 1.0}
    assert all(torch.equal(initial[k], v) for k, v in model.state_dict().items())
