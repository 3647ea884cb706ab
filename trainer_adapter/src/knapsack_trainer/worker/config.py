"""Worker configuration: a pydantic model loaded from YAML, overridable per key.

`knapsack-trainer train --config run.yaml learning_rate=3e-4 task_options.size=32`
loads the file, applies each `dotted.key=value` override (values parsed as YAML, so
`3e-4`, `true`, `[1, 2]` and `null` mean what they look like) and validates the
result once, so a typo in either place is an error naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from knapsack_client import RunSettings
from knapsack_trainer.worker.core_algos import AdvantageEstimator, KLPenalty, LossAggMode
from knapsack_trainer.worker.policy_losses import PolicyLoss

Strategy = Literal["uniform", "filter", "knapsack", "knapsack-bayes"]


class TrainConfig(BaseModel):
    """Everything one GRPO run needs; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    # Model and data.
    model_path: str = Field(description="Local folder of a causal LM (save_pretrained layout).")
    tokenizer_path: str | None = Field(default=None, description="Defaults to model_path.")
    task: str = Field(default="target", description="Registered task name (see tasks.py).")
    task_options: dict[str, Any] = Field(default_factory=dict)
    chat_template: bool = Field(
        default=False, description="Wrap each prompt as a user turn of the tokenizer's template."
    )

    # Allocation through the service.
    batch_size: int = Field(default=16, ge=1, description="Prompts per step.")
    budget: int = Field(default=128, ge=1, description="Rollouts per step.")
    strategy: Strategy = "knapsack"
    run_id: str = Field(default="grpo", min_length=1, max_length=256)
    service_url: str | None = Field(
        default=None, description="knapsack-service URL; None runs an embedded service."
    )
    service_token: str | None = None
    run_settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra run settings (min_n, max_n, estimator, ...) for PUT /v1/runs.",
    )
    split_groups: bool = Field(
        default=True, description="Let the service split one prompt's group across ranks."
    )

    # Optimisation.
    learning_rate: float = Field(default=1e-6, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    clip_ratio: float = Field(default=0.2, gt=0, description="PPO clip eps (low side).")
    clip_ratio_high: float | None = Field(default=None, gt=0, description="DAPO clip-higher.")
    kl_coef: float = Field(default=0.0, ge=0, description="0 disables the reference model.")
    kl_penalty: KLPenalty = KLPenalty.K3
    advantage_estimator: AdvantageEstimator = AdvantageEstimator.GRPO
    policy_loss: PolicyLoss = Field(
        default=PolicyLoss.VANILLA, description="Registered policy loss (policy_losses.py)."
    )
    loss_agg_mode: LossAggMode = LossAggMode.TOKEN_MEAN
    ppo_epochs: int = Field(default=1, ge=1)
    micro_batch_size: int = Field(default=64, ge=1, description="Sequences per forward pass.")
    train_dtype: Literal["float32", "bfloat16"] = "float32"

    # Generation.
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    max_new_tokens: int = Field(default=32, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_model_len: int = Field(default=256, ge=8)
    generation_dtype: str = "float32"
    vllm_kwargs: dict[str, Any] = Field(default_factory=dict)

    # Loop.
    steps: int = Field(default=100, ge=0)
    seed: int = 0
    output_dir: str = "out/grpo"
    checkpoint_interval: int = Field(default=0, ge=0, description="Steps; 0 = only at the end.")
    resume: bool = True
    tensorboard: bool = True
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        RunSettings.model_validate(self.run_settings_payload())
        return self

    @property
    def resolved_tokenizer_path(self) -> str:
        """The tokenizer folder (the model's unless set)."""
        return self.tokenizer_path or self.model_path

    def run_settings_payload(self) -> dict[str, Any]:
        """Body of `PUT /v1/runs/{run_id}`: the strategy and budget plus `run_settings`.

        A prompt never seen gets `default_n` rollouts (the paper's rule), so a first
        step of unseen prompts spends `batch_size * default_n`; unless set, `default_n`
        is the budget's even share, which makes that first step feasible.
        """
        share = max(1, self.budget // self.batch_size)
        return {
            "strategy": self.strategy,
            "budget": self.budget,
            "default_n": share,
            **self.run_settings,
        }


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `dotted.key=value` overrides to a nested mapping (a copy is returned).

    Raises:
        ValueError: If an override has no `=`.

    """
    result = _deep_copy(data)
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"override {override!r} is not key=value")
        target = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = {}
                target[part] = child
            target = child
        target[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Load a YAML config file (optional) and apply command-line overrides.

    Args:
        path: YAML file with `TrainConfig` fields, or None to use overrides only.
        overrides: `dotted.key=value` strings.

    Returns:
        The validated config.

    """
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    return TrainConfig.model_validate(apply_overrides(data, overrides))
