"""knapsack-rl service: per-prompt success statistics and knapsack rollout budgets."""

__version__ = "0.1.0"
