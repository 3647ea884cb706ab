"""The demo: the simulator under every strategy, against the service, with a report."""

from knapsack_trainer.demo.main import add_arguments, main, run_demo, run_from_args
from knapsack_trainer.demo.run import DemoConfig, DemoResult

__all__ = ["DemoConfig", "DemoResult", "add_arguments", "main", "run_demo", "run_from_args"]
