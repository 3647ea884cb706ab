"""knapsack-rl trainer side: a GRPO-dynamics simulator, the demo, and a GRPO worker."""

__version__ = "0.1.0"
