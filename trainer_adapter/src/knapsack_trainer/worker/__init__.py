"""The included GRPO worker: a torch trainer that allocates rollouts through the client.

`run_training(config)` is what `knapsack-trainer train --config FILE` calls. Importing
this package needs only the client; torch and transformers (the `[torch]` extra) and
vLLM (the `[vllm]` extra) are imported by the modules that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from knapsack_trainer.worker.config import TrainConfig, load_config

if TYPE_CHECKING:
    from knapsack_trainer.worker.distributed import DistContext


def run_training(config: TrainConfig, context: DistContext | None = None) -> list[dict[str, Any]]:
    """Train with `config` (joining torch.distributed when launched by torchrun).

    Returns:
        The metrics of every step this process ran.

    """
    from knapsack_trainer.worker.distributed import init_distributed, shutdown_distributed
    from knapsack_trainer.worker.service import connect_service
    from knapsack_trainer.worker.trainer import GRPOTrainer

    owns_group = context is None
    context = context or init_distributed()
    journal = f"{config.output_dir}/journal-rank{context.rank}.jsonl"
    try:
        with connect_service(
            config.service_url,
            config.service_token,
            journal_path=journal,
            world_size=context.world_size,
        ) as client:
            trainer = GRPOTrainer(config, client, context)
            try:
                return trainer.train()
            finally:
                trainer.close()
    finally:
        if owns_group:
            shutdown_distributed(context)


__all__ = ["TrainConfig", "load_config", "run_training"]
