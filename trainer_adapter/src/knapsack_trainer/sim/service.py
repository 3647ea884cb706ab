"""The simulator's link to the budget service: the client, as a trainer uses it.

`ServiceAllocator` turns the loop's two calls into client calls (`allocate`,
`report`); `knapsack_trainer.embedded.embedded_client` starts the service in this
process, so the demo needs no network and no Redis, yet every allocation crosses the
same HTTP routes, validation and store as in production.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from knapsack_client import InvalidRequest, KnapsackClient, RunSettings
from knapsack_trainer.sim.runner import Allocation


class DegradedAllocationError(RuntimeError):
    """The service could not be used and the client fell back to a uniform answer.

    A simulation that compares strategies is meaningless on fallback answers,
    so the strict allocator stops instead of silently measuring uniform.
    """


_FEASIBLE_RANGE = re.compile(r"feasible range \[(\d+), (\d+|inf)\]")


def feasible_budget(error: InvalidRequest, budget: int) -> int | None:
    """The budget closest to `budget` that the service said it can spend, if it said.

    The contract puts the feasible range in the 422's message (`shared/API.md`).
    It happens to the filter strategy once so few prompts remain between p = 0 and
    p = 1 that even `max_n` rollouts each cannot spend the budget: the trainer
    then spends less, which is the filter's known cost.
    """
    if error.field != "budget":
        return None
    match = _FEASIBLE_RANGE.search(error.message)
    if match is None:
        return None
    spendable = max(budget, int(match.group(1)))
    if match.group(2) != "inf":
        spendable = min(spendable, int(match.group(2)))
    return spendable


class ServiceAllocator:
    """Allocations and outcome reports for one run, through `KnapsackClient`."""

    def __init__(
        self,
        client: KnapsackClient,
        run_id: str,
        settings: RunSettings | dict[str, Any],
        *,
        strict: bool = True,
        worker: str = "sim",
    ) -> None:
        """Create (or update) the run on the service.

        Args:
            client: A connected client (embedded app or a real URL).
            run_id: The run's id on the service; one per strategy and seed.
            settings: The run's settings (strategy, estimator, limits).
            strict: Raise `DegradedAllocationError` on a degraded allocation.
            worker: Worker name the reports carry (part of the report id).

        """
        self.client = client
        self.run_id = run_id
        self.strict = strict
        self.worker = worker
        self.info = client.ensure_run(run_id, settings)

    def allocate(self, step: int, prompt_ids: Sequence[str], budget: int) -> Allocation:
        """Ask the service for the batch's group sizes, in the batch's order."""
        prompts = list(prompt_ids)
        try:
            answer = self.client.allocate(self.run_id, step, prompts, budget=budget)
        except InvalidRequest as error:
            spendable = feasible_budget(error, budget)
            if spendable is None or spendable == budget:
                raise
            answer = self.client.allocate(self.run_id, step, prompts, budget=spendable)
        if answer.degraded and self.strict:
            raise DegradedAllocationError(
                f"run {self.run_id} step {step}: degraded allocation ({answer.reason})"
            )
        by_id = {item.prompt_id: item.n for item in answer.allocations}
        trials = np.fromiter((by_id[p] for p in prompt_ids), dtype=np.int64, count=len(prompt_ids))
        return Allocation(trials=trials, degraded=answer.degraded)

    def report(
        self,
        step: int,
        prompt_ids: Sequence[str],
        successes: np.ndarray,
        trials: np.ndarray,
    ) -> None:
        """Report the outcomes of the prompts that got rollouts.

        The report id is the client's deterministic derivation from (run, step,
        worker, attempt), so a retried report is applied once.
        """
        results = [
            {"prompt_id": prompt, "successes": int(k), "trials": int(n)}
            for prompt, k, n in zip(prompt_ids, successes, trials, strict=True)
            if n > 0
        ]
        if results:
            self.client.report(self.run_id, step, results, worker=self.worker)


@contextmanager
def remote_client(url: str, token: str | None = None) -> Iterator[KnapsackClient]:
    """A client for a service on the network (e.g. `knapsack-service serve` with Redis)."""
    client = KnapsackClient(base_url=url, token=token)
    try:
        yield client
    finally:
        client.close()
