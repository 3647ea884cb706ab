"""Run every strategy over several seeds against the service, in parallel.

One job is one (strategy, seed) pair: a fresh run on the service, the same
dataset and batch order as the other strategies of that seed. Jobs go to a
process pool (the machine's cores); each job opens its own client, and, for
the embedded service, its own in-process app on the memory store, so no state
is shared between jobs except through the service when `url` is given.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from knapsack_trainer.embedded import embedded_client
from knapsack_trainer.sim.runner import SimConfig, SimResult, simulate
from knapsack_trainer.sim.service import ServiceAllocator, remote_client
from knapsack_trainer.sim.strategies import DEFAULT_STRATEGIES, StrategySpec

#: Set in each pool process by `_init_worker`: where per-step progress goes.
_PROGRESS: Any = None


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs and where it writes.

    `url=None` runs the service embedded (memory store, no network); a URL
    points the same runs at a running service. `run_prefix=None` picks
    "demo" for the embedded service and a fresh "demo-<random>" for a URL, so
    a second demo against the same Redis does not inherit the first one's
    statistics.

    `diminishing` reruns the `diminishing_strategies` (those of `strategies`)
    under each of these returns options (`sim.dynamics.RETURNS`), labelled
    "name [returns]", beside the default runs under `sim.returns`.
    """

    sim: SimConfig = field(default_factory=SimConfig)
    strategies: tuple[StrategySpec, ...] = DEFAULT_STRATEGIES
    diminishing: tuple[str, ...] = ("sqrt", "capped")
    #: Only strategies that give groups above 8 rollouts: the others (uniform,
    #: DAPO, MoPPS) run the same dynamics under every returns option.
    diminishing_strategies: tuple[str, ...] = ("knapsack", "knapsack-bayes", "coba")
    seeds: tuple[int, ...] = (0, 1, 2)
    out_dir: Path = Path("out/demo")
    url: str | None = None
    token: str | None = None
    processes: int | None = None
    run_prefix: str | None = None
    plots: bool = True

    def resolved_prefix(self) -> str:
        """The run-id prefix this demo uses."""
        if self.run_prefix is not None:
            return self.run_prefix
        return "demo" if self.url is None else f"demo-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Job:
    """One simulated run: a strategy under a returns option, a seed, the run id on the service."""

    spec: StrategySpec
    seed: int
    run_id: str
    sim: SimConfig
    url: str | None
    token: str | None
    label: str = ""

    @property
    def name(self) -> str:
        """The label of the run in the demo's table ("knapsack", "knapsack [sqrt]")."""
        return self.label or self.spec.name


@dataclass
class DemoResult:
    """All runs of the demo, keyed by (strategy name, seed)."""

    config: DemoConfig
    runs: dict[tuple[str, int], SimResult]
    wall_seconds: float = 0.0
    #: Each run label's strategy and returns option, in the order of the table.
    labels: dict[str, Any] = field(default_factory=dict)


def run_job(job: Job, on_step: Callable[[object], None] | None = None) -> SimResult:
    """Simulate one (strategy, seed) against the embedded service or `job.url`.

    Trainer-loop strategies (DAPO, MoPPS, CoBA) need no service: no client is opened.
    """
    budget = job.spec.budget(job.sim.base_budget)
    if not job.spec.uses_service:
        policy = job.spec.policy(job.sim, job.seed)
        return simulate(job.sim, job.seed, policy, budget, on_step=on_step)
    opener = embedded_client() if job.url is None else remote_client(job.url, job.token)
    with opener as client:
        allocator = ServiceAllocator(client, job.run_id, job.spec.settings)
        policy = job.spec.policy(job.sim, job.seed, allocator)
        return simulate(job.sim, job.seed, policy, budget, on_step=on_step)


def _init_worker(progress: Any) -> None:
    global _PROGRESS
    _PROGRESS = progress


def _run_in_pool(job: Job) -> SimResult:
    progress = _PROGRESS
    return run_job(job, on_step=(lambda _m: progress.put(1)) if progress is not None else None)


def make_jobs(config: DemoConfig) -> list[Job]:
    """The (strategy, seed) jobs of a demo, seeds outermost so early results are comparable.

    After the default runs of a seed come the diminishing-returns reruns of that seed.
    """
    prefix = config.resolved_prefix()
    variants = [(spec, config.sim.returns, spec.name) for spec in config.strategies]
    variants += [
        (spec, returns, f"{spec.name} [{returns}]")
        for returns in config.diminishing
        if returns != config.sim.returns
        for spec in config.strategies
        if spec.name in config.diminishing_strategies
    ]
    jobs = []
    for seed in config.seeds:
        for spec, returns, label in variants:
            run_id = f"{prefix}-{label.replace(' [', '-').rstrip(']')}-s{seed}"
            sim = replace(config.sim, returns=returns)
            jobs.append(Job(spec, seed, run_id, sim, config.url, config.token, label))
    return jobs


def default_processes() -> int:
    """One process per available core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_all(
    jobs: Sequence[Job],
    processes: int,
    on_progress: Callable[[int], None] | None = None,
) -> list[SimResult]:
    """Run `jobs`, in a pool of `processes` when more than one; results in job order.

    The pool starts its processes with `spawn`, so a script that calls this with
    more than one process needs the usual `if __name__ == "__main__":` guard.

    Args:
        jobs: What to run.
        processes: Worker processes; 1 runs everything in this process.
        on_progress: Called with the number of steps completed since the last call.

    """
    if processes <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            callback = (lambda _m: on_progress(1)) if on_progress is not None else None
            results.append(run_job(job, on_step=callback))
        return results
    # spawn: the children start clean (no inherited threads or event loops) and
    # import the service themselves; it costs a second per process, once.
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    with ProcessPoolExecutor(
        max_workers=processes,
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress,),
    ) as pool:
        futures: list[Future[SimResult]] = [pool.submit(_run_in_pool, job) for job in jobs]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # raise a job's error now, not after the others
            _drain(progress, on_progress)
        _drain(progress, on_progress)
        return [future.result() for future in futures]


def _drain(progress: Any, on_progress: Callable[[int], None] | None) -> None:
    count = 0
    while True:
        try:
            count += progress.get_nowait()
        except queue_module.Empty:
            break
    if count and on_progress is not None:
        on_progress(count)
