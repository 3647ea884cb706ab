"""The chaos scenario: trainers, two services and one Redis, with faults injected.

`run_scenario(config)` starts an append-only redis-server, two `knapsack-service
serve` processes on it and N trainer processes (`chaos_trainer.py`), then a
bounded chaos loop cycles through the fault kinds:

- `kill_service`: SIGKILL one service process, restart it on the same port;
- `kill_redis`: SIGKILL Redis, restart it from its append-only file;
- `pause_redis`: SIGSTOP Redis for `pause_seconds` (longer than the service's
  KRL_REDIS_TIMEOUT), then SIGCONT;
- `kill_trainer`: SIGKILL a trainer right after it wrote a report to its ground
  truth (so mostly while the report is in flight), then start it again: it
  replays its journal and resumes after its last ground-truth step;
- `power_loss` (optional, `appendfsync everysec` only): an *emulation* of a host
  crash: copy Redis's append-only directory, let about one second of writes be
  acknowledged, SIGKILL Redis and restore the copy. A process SIGKILL never loses
  what Redis already wrote to the kernel; a power cut loses what was not fsynced,
  which everysec bounds at about a second.

With `ranks > 1` each trainer is several rank processes that ask for every step's
plan on their own and report their own slices; every two answers for one step that
were not degraded must be the same plan (one plan per step, issue 14).

At the end everything is healed, the trainers drain their journals, and the
totals in Redis (per prompt through the service's lookup, per report from the
run's applied report ids) are compared with the ground truth the trainers
wrote before sending.

Everything listens on 127.0.0.1; every wait is bounded; `Cluster.close()` kills
whatever is left (it runs on exceptions and Ctrl-C too).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from knapsack_client import KnapsackClient
from knapsack_service.store.keys import RunKeys
from tests.reliability.chaos_trainer import (
    JOURNAL_FILE,
    STEPS_FILE,
    TRUTH_FILE,
    TrainerConfig,
    read_lines,
    read_truth,
)
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "chaos-run"
FAULT_KINDS = ("kill_service", "kill_redis", "pause_redis", "kill_trainer")
#: Seconds a killed service or Redis stays down before it is restarted.
DOWNTIME_SECONDS = 0.5
#: Longest wait for a trainer to write its next ground-truth report before it is killed anyway.
TRAINER_KILL_WAIT = 3.0
#: Longest wait for the trainers to finish and drain their journals after the end time.
FINISH_TIMEOUT = 120.0


@dataclass(frozen=True)
class ChaosConfig:
    """One scenario."""

    seconds: float = 60.0
    fsync: str = "always"
    trainers: int = 4
    seed: int = 0
    redis_timeout: float = 0.3
    pause_seconds: float = 1.5
    gap_seconds: tuple[float, float] = (1.0, 3.0)  # quiet time between two faults
    quiet_tail: float = 3.0  # seconds without faults before the end time
    step_sleep: float = 0.02
    power_loss: bool = False  # add the emulated host crash (everysec only)
    workdir: str | None = None
    ranks: int = 1  # rank processes per trainer, each asking for the step's plan


@dataclass
class FaultRecord:
    """One injected fault."""

    kind: str
    started: float
    seconds: float
    detail: str = ""


@dataclass
class ScenarioResult:
    """What one scenario measured; `lost_outcomes` and `double_counted_outcomes` are rollouts."""

    fsync: str
    seconds: float
    trainers: int
    faults: dict[str, int]
    reports: int
    outcomes: int
    lost_reports: int
    lost_outcomes: int
    double_counted_outcomes: int
    lost_acknowledged_reports: int
    lost_in_power_loss_window: int
    lost_outcomes_in_power_loss_window: int
    unexpected_reports: int
    failed_steps: int
    steps: int
    degraded_allocations: int
    late_reports: int
    trainers_killed_mid_report: int
    pending_at_end: int
    max_step_seconds: float
    p50_step_seconds: float
    p99_step_seconds: float
    counters: dict[str, int]
    timeline: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plan_steps_checked: int = 0  # (trainer, step) pairs answered to two ranks or more
    plan_disagreements: int = 0  # of those, steps whose non-degraded answers differed
    plan_degraded_answers: int = 0  # rank answers that were degraded (not compared)

    @property
    def consistent(self) -> bool:
        """Nothing lost, nothing counted twice, no failed step, every journal drained."""
        return (
            self.lost_outcomes == 0
            and self.double_counted_outcomes == 0
            and self.lost_reports == 0
            and self.unexpected_reports == 0
            and self.failed_steps == 0
            and self.pending_at_end == 0
            and self.plan_disagreements == 0
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


# ---------------------------------------------------------------------- processes


class TrainerProcess:
    """One `chaos_trainer` subprocess, restartable with the same config."""

    def __init__(self, config: TrainerConfig, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.exit_codes: list[int] = []

    def start(self) -> None:
        """Start (or restart) the trainer."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.chaos_trainer", self.config.to_json()],
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )

    def kill(self) -> None:
        """SIGKILL, like a crashed trainer."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
            self.kills += 1
        self.process = None

    def wait(self, timeout: float) -> int | None:
        """Wait for a normal exit; None if still running after `timeout`."""
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.exit_codes.append(code)
        self.process = None
        return code


class Cluster:
    """Redis, two services and the trainers of one scenario; `close()` ends them all."""

    def __init__(self, config: ChaosConfig, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.redis = RedisServer(appendonly=True, appendfsync=config.fsync)
        self.services: list[ServiceProcess] = []
        self.trainers: list[TrainerProcess] = []
        self.end_time = 0.0

    def start(self) -> None:
        """Redis, then both services, then the trainers."""
        self.redis.start()
        env = {"KRL_REDIS_URL": self.redis.url, "KRL_REDIS_TIMEOUT": str(self.config.redis_timeout)}
        for number in range(2):
            service = ServiceProcess(env, log_path=self.directory / f"service-{number}.log")
            self.services.append(service)
            service.start()
        urls = tuple(service.url for service in self.services)
        self.end_time = time.time() + self.config.seconds
        ranks = self.config.ranks
        for index in range(self.config.trainers):
            for rank in range(ranks):
                name = f"trainer-{index}" if ranks == 1 else f"trainer-{index}-rank{rank}"
                trainer_dir = self.directory / name
                trainer_dir.mkdir(parents=True, exist_ok=True)
                config = TrainerConfig(
                    urls=urls if (index + rank) % 2 == 0 else urls[::-1],
                    run_id=RUN_ID,
                    worker=name,
                    index=index,
                    seed=self.config.seed,
                    directory=str(trainer_dir),
                    end_time=self.end_time,
                    step_sleep=self.config.step_sleep,
                    ranks=ranks,
                    rank=rank,
                )
                trainer = TrainerProcess(config, self.directory / f"{name}.log")
                self.trainers.append(trainer)
                trainer.start()

    def heal(self) -> None:
        """Every process up again (after the chaos loop or a failed fault)."""
        self.redis.resume()
        if not self.redis.running:
            self.redis.start()
        for service in self.services:
            if service.process is None or service.process.poll() is not None:
                service.process = None
                service.start()

    def close(self) -> None:
        """Kill every trainer and service, stop Redis; never raises."""
        for trainer in self.trainers:
            with contextlib.suppress(Exception):
                trainer.kill()
        for service in self.services:
            with contextlib.suppress(Exception):
                service.stop()
        with contextlib.suppress(Exception):
            self.redis.close()


# ---------------------------------------------------------------------- faults


class ChaosLoop:
    """Injects faults in a seeded order until the quiet tail before the end time."""

    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.config = cluster.config
        self.rng = rng
        self.faults: list[FaultRecord] = []
        self.power_loss_windows: list[tuple[float, float]] = []
        self.mid_report_kills = 0

    def kinds(self) -> Iterator[str]:
        """Every kind once per round, in a seeded order; power loss once, in the first round."""
        power_loss_due = self.config.power_loss and self.config.fsync == "everysec"
        while True:
            order = list(FAULT_KINDS)
            self.rng.shuffle(order)
            if power_loss_due:
                order.insert(self.rng.randrange(1, len(order) + 1), "power_loss")
                power_loss_due = False
            yield from order

    def run(self) -> None:
        """Inject faults until the quiet tail; at most one fault per gap, bounded in count."""
        stop_at = self.cluster.end_time - self.config.quiet_tail
        max_faults = int(self.config.seconds) + 8
        kinds = self.kinds()
        actions: dict[str, Callable[[], str]] = {
            "kill_service": self.kill_service,
            "kill_redis": self.kill_redis,
            "pause_redis": self.pause_redis,
            "kill_trainer": self.kill_trainer,
            "power_loss": self.power_loss,
        }
        time.sleep(self.rng.uniform(*self.config.gap_seconds))
        while time.time() < stop_at and len(self.faults) < max_faults:
            kind = next(kinds)
            started = time.time()
            try:
                detail = actions[kind]()
            finally:
                self.cluster.heal()
            self.faults.append(FaultRecord(kind, started, time.time() - started, detail))
            time.sleep(
                max(0.0, min(self.rng.uniform(*self.config.gap_seconds), stop_at - time.time()))
            )

    def kill_service(self) -> str:
        """SIGKILL a service; restart it on the same port after the downtime."""
        number = sum(1 for fault in self.faults if fault.kind == "kill_service") % 2
        service = self.cluster.services[number]
        assert service.process is not None
        service.process.kill()
        service.process.wait()
        service.process = None
        time.sleep(DOWNTIME_SECONDS)
        service.start()
        return f"service {number}"

    def kill_redis(self) -> str:
        """SIGKILL Redis; restart it from its append-only file."""
        self.cluster.redis.kill()
        time.sleep(DOWNTIME_SECONDS)
        self.cluster.redis.start()
        return "restarted from AOF"

    def pause_redis(self) -> str:
        """SIGSTOP Redis for longer than the service's timeout, then SIGCONT."""
        self.cluster.redis.pause()
        time.sleep(self.config.pause_seconds)
        self.cluster.redis.resume()
        return f"{self.config.pause_seconds:.1f} s"

    def kill_trainer(self) -> str:
        """SIGKILL a trainer right after its next ground-truth write; restart it."""
        trainer = self.rng.choice(self.cluster.trainers)
        truth = Path(trainer.config.directory) / TRUTH_FILE
        size = _size(truth)
        deadline = time.monotonic() + TRAINER_KILL_WAIT
        while _size(truth) == size and time.monotonic() < deadline:
            time.sleep(0.0005)
        trainer.kill()
        mid_report = killed_mid_report(Path(trainer.config.directory))
        self.mid_report_kills += mid_report
        trainer.start()
        return f"{trainer.config.worker}{' mid-report' if mid_report else ''}"

    def power_loss(self) -> str:
        """Emulated host crash: Redis restarts from an AOF copy taken ~1 s before the kill."""
        server = self.cluster.redis
        aof_dir = server.directory / "appendonlydir"
        snapshot = server.directory / "aof-snapshot"
        shutil.rmtree(snapshot, ignore_errors=True)
        copied_at = time.time()
        shutil.copytree(aof_dir, snapshot)
        time.sleep(1.0)
        server.kill()
        killed_at = time.time()
        shutil.rmtree(aof_dir)
        snapshot.rename(aof_dir)
        self.power_loss_windows.append((copied_at, killed_at))
        server.start()
        return f"AOF rolled back {killed_at - copied_at:.2f} s"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def killed_mid_report(directory: Path) -> bool:
    """The last ground-truth report has no step record: the kill hit its send."""
    truth = read_truth(directory)
    if not truth:
        return False
    last = truth[-1]["step"]
    return not any(r.get("step") == last for r in read_lines(directory / STEPS_FILE))


# ---------------------------------------------------------------------- verdict


def applied_report_ids(server: RedisServer) -> set[str]:
    """Report ids the run's Lua script applied (read straight from Redis)."""
    with redis.Redis.from_url(server.url) as client:
        return {raw.decode() for raw in client.zrange(RunKeys(RUN_ID).report_ids, 0, -1)}


def verify(cluster: Cluster, loop: ChaosLoop) -> ScenarioResult:
    """Compare what Redis holds with the trainers' ground truth."""
    config = cluster.config
    expected: Counter[str] = Counter()
    truth_ids: dict[str, str] = {}  # report id -> trainer
    report_trials: dict[str, int] = {}
    outcomes = 0
    for trainer in cluster.trainers:
        for record in read_truth(Path(trainer.config.directory)):
            if record["report_id"] in truth_ids:
                continue  # the same report generated twice would be a harness bug
            truth_ids[record["report_id"]] = trainer.config.worker
            for prompt, _, trials in record["results"]:
                expected[prompt] += trials
                outcomes += trials
            report_trials[record["report_id"]] = sum(n for _, _, n in record["results"])
    url = cluster.services[0].url
    prompts = sorted({p for t in cluster.trainers for p in _prompt_ids(t.config)})
    with KnapsackClient(base_url=url, token="") as client:
        lookup = client.lookup(RUN_ID, prompts)
        counters = client.get_run(RUN_ID).counters.model_dump(exclude_none=True)
    observed = {stats.prompt_id: stats.trials for stats in lookup.prompts}
    lost = sum(max(0, expected[p] - observed.get(p, 0)) for p in prompts)
    double = sum(max(0, observed.get(p, 0) - expected[p]) for p in prompts)
    applied = applied_report_ids(cluster.redis)
    lost_ids = set(truth_ids) - applied
    steps, failed, degraded, late, pending = _step_records(cluster)
    acked_at = {s["report_id"]: s["acked_at"] for s in steps if s.get("acked_at")}
    for trainer in cluster.trainers:
        for event in read_lines(Path(trainer.config.directory) / STEPS_FILE):
            if event.get("event") == "rereport" and event.get("acked_at"):
                acked_at[event["report_id"]] = max(
                    acked_at.get(event["report_id"], 0), event["acked_at"]
                )
    lost_acked = [rid for rid in lost_ids if rid in acked_at]
    in_window = [
        rid
        for rid in lost_acked
        if any(start <= acked_at[rid] <= end for start, end in loop.power_loss_windows)
    ]
    times = sorted(s["seconds"] for s in steps)
    start = cluster.end_time - config.seconds
    notes = []
    if counters.get("reports") != len(applied):
        notes.append(f"meta.reports={counters.get('reports')} but {len(applied)} report ids")
    if counters.get("rollouts") != sum(observed.values()):
        notes.append(
            f"meta.rollouts={counters.get('rollouts')} but prompts hold {sum(observed.values())}"
        )
    checked, disagreements, degraded_plans = _plan_agreement(cluster)
    return ScenarioResult(
        fsync=config.fsync,
        seconds=config.seconds,
        trainers=config.trainers,
        faults=dict(Counter(f.kind for f in loop.faults)),
        reports=len(truth_ids),
        outcomes=outcomes,
        lost_reports=len(lost_ids),
        lost_outcomes=lost,
        double_counted_outcomes=double,
        lost_acknowledged_reports=len(lost_acked),
        lost_in_power_loss_window=len(in_window),
        lost_outcomes_in_power_loss_window=sum(report_trials[rid] for rid in in_window),
        unexpected_reports=len(applied - set(truth_ids)),
        failed_steps=failed,
        steps=len(steps),
        degraded_allocations=degraded,
        late_reports=late,
        trainers_killed_mid_report=loop.mid_report_kills,
        pending_at_end=pending,
        max_step_seconds=times[-1] if times else 0.0,
        p50_step_seconds=statistics.median(times) if times else 0.0,
        p99_step_seconds=times[min(len(times) - 1, int(0.99 * len(times)))] if times else 0.0,
        counters=counters,
        timeline=[
            f"{f.started - start:6.2f}s {f.kind} ({f.seconds:.2f} s) {f.detail}"
            for f in loop.faults
        ],
        notes=notes,
        plan_steps_checked=checked,
        plan_disagreements=disagreements,
        plan_degraded_answers=degraded_plans,
    )


def _plan_agreement(cluster: Cluster) -> tuple[int, int, int]:
    """Steps answered to two ranks or more, those whose non-degraded plans differ, degraded."""
    digests: dict[tuple[int, int], set[str]] = {}
    answers: Counter[tuple[int, int]] = Counter()
    degraded = 0
    for trainer in cluster.trainers:
        for event in read_lines(Path(trainer.config.directory) / STEPS_FILE):
            if event.get("event") != "plan":
                continue
            if event["degraded"]:
                degraded += 1
                continue
            key = (trainer.config.index, int(event["step"]))
            digests.setdefault(key, set()).add(event["digest"])
            answers[key] += 1
    checked = [key for key, count in answers.items() if count > 1]
    return len(checked), sum(len(digests[key]) > 1 for key in checked), degraded


def _prompt_ids(config: TrainerConfig) -> list[str]:
    return [f"sim-{i:06d}" for i in range(config.prompts)]


def _step_records(cluster: Cluster) -> tuple[list[dict[str, Any]], int, int, int, int]:
    """Completed steps, failed steps, degraded allocations, late reports, reports left pending."""
    steps: list[dict[str, Any]] = []
    failed = degraded = late = pending = 0
    for trainer in cluster.trainers:
        directory = Path(trainer.config.directory)
        records = read_lines(directory / STEPS_FILE)
        for record in records:
            if "failed" in record or record.get("event") == "crashed":
                failed += 1
            elif "seconds" in record:
                steps.append(record)
                degraded += bool(record["degraded"])
                late += not record["delivered"]
        done = [r for r in records if r.get("event") == "done"]
        pending += done[-1]["pending"] if done else len(_journal_pending(directory))
        # a trainer that exited by itself with an error (never one we SIGKILLed)
        failed += sum(1 for code in trainer.exit_codes if code != 0)
    return steps, failed, degraded, late, pending


def _journal_pending(directory: Path) -> list[Any]:
    from knapsack_client._journal import Journal

    return Journal(directory / JOURNAL_FILE).pending()


# ---------------------------------------------------------------------- scenario


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so `finally` cleans up as for Ctrl-C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_scenario(config: ChaosConfig) -> ScenarioResult:
    """Run one scenario to the end and return the comparison with the ground truth."""
    own_dir = config.workdir is None
    directory = Path(config.workdir or tempfile.mkdtemp(prefix="krl-chaos-"))
    directory.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(config, directory)
    try:
        with _terminate_as_interrupt():
            cluster.start()
            loop = ChaosLoop(cluster, random.Random(config.seed))
            loop.run()
            cluster.heal()
            _wait_for_trainers(cluster)
            return verify(cluster, loop)
    finally:
        cluster.close()
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)


def _wait_for_trainers(cluster: Cluster) -> None:
    deadline = cluster.end_time + FINISH_TIMEOUT
    for trainer in cluster.trainers:
        code = trainer.wait(max(1.0, deadline - time.time()))
        if code is None:
            raise RuntimeError(f"{trainer.config.worker} did not finish by {FINISH_TIMEOUT} s")


__all__ = [
    "FAULT_KINDS",
    "ChaosConfig",
    "ScenarioResult",
    "run_scenario",
]
