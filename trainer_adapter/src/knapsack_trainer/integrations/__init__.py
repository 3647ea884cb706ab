"""Drop-in integrations of the knapsack-rl service into other trainers.

- `knapsack_trainer.integrations.trl`: `KnapsackGRPOTrainer`, TRL's GRPOTrainer with
  per-prompt group sizes (extra `trl`).
- `knapsack_trainer.integrations.verl`: a verl trainer that sets `__rollout_n__`
  per prompt (needs verl, in an environment of its own).
- `knapsack_trainer.integrations.grouping`: group-relative advantages over uneven
  groups (torch only), shared by both.

The submodules import their trainer only when imported themselves.
"""
