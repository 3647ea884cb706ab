"""One rank of the 2-process data-parallel test (run as a script by the test)."""

from __future__ import annotations

import json
import sys

import torch

from knapsack_trainer.worker import TrainConfig
from knapsack_trainer.worker.distributed import init_distributed, shutdown_distributed
from knapsack_trainer.worker.service import connect_service
from knapsack_trainer.worker.trainer import GRPOTrainer


def main() -> int:
    config = TrainConfig.model_validate(json.loads(sys.argv[1]))
    weights_path = sys.argv[2]
    context = init_distributed(timeout_seconds=120)
    try:
        with connect_service(config.service_url, "", world_size=context.world_size) as client:
            trainer = GRPOTrainer(config, client, context)
            history = trainer.train()
            torch.save(
                {"weights": trainer.model.state_dict(), "history": history},
                f"{weights_path}.rank{context.rank}",
            )
            trainer.close()
    finally:
        shutdown_distributed(context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
