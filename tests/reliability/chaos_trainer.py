"""A simulated trainer process for the chaos scenario (`bench/chaos.py`, `test_chaos.py`).

Each process runs the simulator's step (allocate, roll out, GRPO update, report)
through the real `KnapsackClient`, with its own journal, against two service
processes behind the same Redis. It is built to be SIGKILLed at any moment and
started again:

- **Ground truth before sending.** Every report is appended (fsynced) to
  `truth.jsonl` before `client.report()` journals and sends it. A kill between
  the two leaves the last report in the ground truth only; the restarted
  trainer therefore reports its last ground-truth step again (same derived
  report_id, so the service counts it once) before going on, which puts it in
  the journal too. A line torn by the kill is ignored: it was in neither.
- **Resume from the last completed step.** The ground truth is also the
  checkpoint: replaying its outcomes through `SkillModel.grpo_step` rebuilds the
  learner exactly, and the trainer continues at the next step.
- **Never fail a step because of an outage.** allocate() degrades to uniform;
  a report the service cannot take (ServiceUnavailable) stays in the journal
  and is resent after the service answers again.
- **Data-parallel ranks.** With `ranks > 1`, several processes are the ranks of
  one trainer: each asks the service for the step's plan on its own, at its own
  pace (a rank may ask after another rank reported the step), logs the plan's
  digest (`plan` events), and reports only its slice of the prompts. One plan per
  step (`knapsack_service.step_plans`) must give them all the same answer.
- **Both services.** `FailoverTransport` alternates the two URLs per request and
  moves to the other one when a connection is refused (nothing was sent, so
  moving is always safe); the client itself stays single-URL and unchanged.

Run as `python -m tests.reliability.chaos_trainer '<TrainerConfig JSON>'` from
the repository root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from knapsack_client import KnapsackClient, RetryPolicy, ServiceUnavailable, derive_report_id
from knapsack_client._journal import Journal
from knapsack_trainer.sim import LearningRates, PromptSet, ServiceAllocator, SkillModel

#: Files each trainer keeps in its directory.
TRUTH_FILE = "truth.jsonl"
JOURNAL_FILE = "journal.jsonl"
STEPS_FILE = "steps.jsonl"
#: Exit status of a trainer that could not start or finish (never a SIGKILL).
EXIT_FAILED = 3
#: Seconds between tries while waiting for a service at start-up and at the final drain.
WAIT_INTERVAL = 0.25


@dataclass(frozen=True)
class TrainerConfig:
    """Everything one trainer process needs; passed as JSON on the command line."""

    urls: tuple[str, ...]
    run_id: str
    worker: str
    index: int
    seed: int
    directory: str
    end_time: float  # time.time() after which no new step starts
    prompts: int = 640
    batch_size: int = 64
    rollouts_per_prompt: int = 8
    max_steps: int = 100_000
    step_sleep: float = 0.02  # the "rollout" time of a step
    startup_seconds: float = 60.0  # longest wait for a service at start-up
    drain_seconds: float = 60.0  # longest wait to deliver the journal at the end
    ranks: int = 1  # processes sharing this trainer's batches (data-parallel ranks)
    rank: int = 0

    def to_json(self) -> str:
        """The config as one JSON argument."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainerConfig:
        """Inverse of `to_json`."""
        data = json.loads(text)
        data["urls"] = tuple(data["urls"])
        return cls(**data)

    @property
    def path(self) -> Path:
        """The trainer's directory."""
        return Path(self.directory)


# ---------------------------------------------------------------------- transport


class FailoverTransport(httpx.BaseTransport):
    """Send each request to the next of several services; skip one that refuses.

    Only a connection error moves a request on within the same call: the request
    was never sent, so the other service may take it. A timeout or a dropped
    connection after sending is raised, for the client's retry policy to handle
    (every request it sends is safe to repeat), and the next call goes to the
    other service anyway.
    """

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one URL")
        self._targets = [httpx.URL(url) for url in urls]
        self._transport = httpx.HTTPTransport(retries=0)
        self._next = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        error: httpx.ConnectError | None = None
        for _ in self._targets:
            target = self._targets[self._next % len(self._targets)]
            self._next += 1
            request.url = request.url.copy_with(
                scheme=target.scheme, host=target.host, port=target.port
            )
            request.headers["Host"] = target.netloc.decode("ascii")
            try:
                return self._transport.handle_request(request)
            except httpx.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    def close(self) -> None:
        self._transport.close()


# ---------------------------------------------------------------------- files


def append_line(path: Path, record: dict[str, Any], *, sync: bool) -> None:
    """Append one JSON line in a single write (fsynced when `sync`)."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of a file; a line torn by a kill is skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for line in raw.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def read_truth(directory: Path) -> list[dict[str, Any]]:
    """The ground truth: `{"step", "report_id", "results": [[prompt, k, n], ...]}` per report."""
    return read_lines(directory / TRUTH_FILE)


# ---------------------------------------------------------------------- trainer


class ChaosTrainer:
    """One simulated trainer: the simulator's step, resumable from its ground truth."""

    def __init__(self, config: TrainerConfig) -> None:
        self.config = config
        self.directory = config.path
        self.directory.mkdir(parents=True, exist_ok=True)
        data_rng = np.random.default_rng([config.seed, 0])
        self.prompts = PromptSet.generate(config.prompts, 16, data_rng)
        self.position = {prompt: i for i, prompt in enumerate(self.prompts.prompt_ids)}
        self.model = SkillModel(self.prompts, LearningRates())
        self.http = httpx.Client(transport=FailoverTransport(config.urls), base_url="http://krl")
        self.client = KnapsackClient(
            base_url="http://krl",
            token="",
            retry=RetryPolicy(),
            journal_path=self.directory / JOURNAL_FILE,
            http_client=self.http,
        )
        self.allocator: ServiceAllocator | None = None

    @property
    def budget(self) -> int:
        """Rollouts per step."""
        return self.config.batch_size * self.config.rollouts_per_prompt

    def batch(self, step: int) -> np.ndarray:
        """The step's prompt indices; a function of (seed, trainer, step) only."""
        rng = np.random.default_rng([self.config.seed, self.config.index, step, 1])
        return rng.choice(self.config.prompts, self.config.batch_size, replace=False)

    def outcome_rng(self, step: int) -> np.random.Generator:
        """The step's outcome draws; a function of (seed, trainer, step) only."""
        return np.random.default_rng([self.config.seed, self.config.index, step, 2])

    # ------------------------------------------------------------------ start-up

    def connect(self) -> None:
        """Create the run (PUT is idempotent), waiting for a service if none answers."""
        deadline = time.monotonic() + self.config.startup_seconds
        while True:
            try:
                self.allocator = ServiceAllocator(
                    self.client, self.config.run_id, {}, strict=False, worker=self.config.worker
                )
                return
            except ServiceUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(WAIT_INTERVAL)

    def recover(self) -> int:
        """Rebuild the learner from the ground truth; returns the step to run next.

        The last ground-truth report may have been killed before the client
        journaled it: report it again (a duplicate if it did arrive).
        """
        truth = read_truth(self.directory)
        for record in truth:
            self._replay_update(record)
        self._deliver_pending()
        if not truth:
            return 0
        last = truth[-1]
        results = [
            {"prompt_id": prompt, "successes": k, "trials": n} for prompt, k, n in last["results"]
        ]
        acked_at = None
        try:
            self.client.report(self.config.run_id, last["step"], results, worker=self.config.worker)
            acked_at = time.time()
        except ServiceUnavailable:
            pass  # journaled: resent once a service answers
        append_line(
            self.directory / STEPS_FILE,
            {"event": "rereport", "report_id": last["report_id"], "acked_at": acked_at},
            sync=False,
        )
        return int(last["step"]) + 1

    def _replay_update(self, record: dict[str, Any]) -> None:
        index = self.batch(int(record["step"]))
        slot = {int(i): j for j, i in enumerate(index)}
        successes = np.zeros(len(index), dtype=np.int64)
        trials = np.zeros(len(index), dtype=np.int64)
        for prompt, k, n in record["results"]:
            j = slot[self.position[prompt]]
            successes[j], trials[j] = k, n
        self.model.grpo_step(index, successes, trials)

    def _deliver_pending(self) -> None:
        # Unreachable: the client resends after its next successful call.
        with contextlib.suppress(ServiceUnavailable):
            self.client.replay_journal()

    # ------------------------------------------------------------------ steps

    def step(self, step: int) -> dict[str, Any]:
        """One training step; returns its log record."""
        assert self.allocator is not None
        started = time.monotonic()
        index = self.batch(step)
        ids = [self.prompts.prompt_ids[i] for i in index]
        allocation = self.allocator.allocate(step, ids, self.budget)
        allocated = time.monotonic()
        trials = np.asarray(allocation.trials, dtype=np.int64)
        if self.config.ranks > 1:
            append_line(
                self.directory / STEPS_FILE,
                {
                    "event": "plan",
                    "step": step,
                    "digest": hashlib.sha256(trials.tobytes()).hexdigest(),
                    "degraded": bool(allocation.degraded),
                },
                sync=False,
            )
        time.sleep(self.config.step_sleep)  # the rollouts
        successes = self.outcome_rng(step).binomial(trials, self.model.success_rates(index))
        # This rank's slice of the batch (every prompt with one rank): its rollouts,
        # its report, its update; the other ranks' prompts count as not rolled out,
        # exactly as `_replay_update` rebuilds them from the ground truth.
        others = np.arange(len(index)) % self.config.ranks != self.config.rank
        trials = np.where(others, 0, trials)
        successes = np.where(others, 0, successes)
        self.model.grpo_step(index, successes, trials)
        results = [
            [prompt, int(k), int(n)]
            for prompt, k, n in zip(ids, successes, trials, strict=True)
            if n > 0
        ]
        report_id = derive_report_id(self.config.run_id, step, self.config.worker)
        append_line(
            self.directory / TRUTH_FILE,
            {"step": step, "report_id": report_id, "results": results},
            sync=True,
        )
        error = None
        try:
            self.allocator.report(step, ids, successes, trials)
        except ServiceUnavailable as exc:  # kept in the journal, resent later
            error = f"{type(exc).__name__}: {exc.message}"
        finished = time.monotonic()
        return {
            "step": step,
            "report_id": report_id,
            "seconds": finished - started,
            "allocate_seconds": allocated - started,
            "report_seconds": finished - allocated - self.config.step_sleep,
            "degraded": bool(allocation.degraded),
            "delivered": error is None,
            "late": error,
            "acked_at": time.time() if error is None else None,
            "ended_at": time.time(),
        }

    def drain(self) -> int:
        """Deliver every journaled report before exiting; returns how many are left."""
        journal = Journal(self.directory / JOURNAL_FILE)
        deadline = time.monotonic() + self.config.drain_seconds
        while journal.pending() and time.monotonic() < deadline:
            try:
                self.client.replay_journal()
            except ServiceUnavailable:
                time.sleep(WAIT_INTERVAL)
        return len(journal.pending())

    def run(self) -> int:
        """Start (or resume), train until the end time, drain; returns the exit status."""
        steps_path = self.directory / STEPS_FILE
        started = time.time()
        self.connect()
        next_step = self.recover()
        append_line(
            steps_path,
            {"event": "start", "resume_step": next_step, "startup_seconds": time.time() - started},
            sync=False,
        )
        step = next_step
        while step < self.config.max_steps and time.time() < self.config.end_time:
            try:
                record = self.step(step)
            except Exception as exc:  # a failed step: what the chaos run must never see
                record = {"step": step, "failed": f"{type(exc).__name__}: {exc}"}
            append_line(steps_path, record, sync=False)
            step += 1
        pending = self.drain()
        append_line(steps_path, {"event": "done", "pending": pending}, sync=False)
        return 0 if pending == 0 else EXIT_FAILED

    def close(self) -> None:
        """Close the connections."""
        self.client.close()
        self.http.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of a trainer process."""
    args = sys.argv[1:] if argv is None else argv
    config = TrainerConfig.from_json(args[0])
    trainer = ChaosTrainer(config)
    try:
        return trainer.run()
    except Exception as exc:
        append_line(
            config.path / STEPS_FILE,
            {"event": "crashed", "error": f"{type(exc).__name__}: {exc}"},
            sync=False,
        )
        return EXIT_FAILED
    finally:
        trainer.close()


if __name__ == "__main__":
    sys.exit(main())
