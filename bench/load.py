"""Load ramp: concurrent allocations and reports against 1 and N uvicorn workers on Redis.

For each worker count, starts `knapsack-service serve --workers N` on a fresh
redis-server, seeds a run with statistics for 256 prompts, then ramps the number of
concurrent clients (asyncio + httpx, one connection each). Every client alternates an
allocation of 256 prompts and a report of 256 results (fresh report ids) for
`--seconds` per level. Per level: requests per second, p50/p99 latency, non-2xx
answers (429 and 503 apart), degraded allocations (answered uniformly because the
store failed: on a healthy Redis there must be none), and the CPU used by the
service processes, redis-server and the load generator itself (from
/proc/<pid>/stat), which says what saturated first.

The knee is the highest throughput whose p99 stays under 50 ms. CAUTION: the load
generator runs on the same machine as the service and Redis; with few cores they
compete, so the figures are a floor for a real deployment, not a capacity plan.

The default ramp goes past `KRL_MAX_CONCURRENCY` (256): up to 256 clients every
request must succeed (redis-py's default pool of 100 connections used to turn the
101st concurrent request into a degraded answer or a 503); past it, 429 is the
designed answer, never 503 or a degraded allocation.

    python bench/load.py [--workers 1,2] [--levels 1,...,256,320] [--seconds 4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.service_process import ServiceProcess  # noqa: E402

PROMPTS = [f"load-prompt-{i:04d}" for i in range(256)]
RUN = "load-run"
P99_TARGET_MS = 50.0
#: The service's KRL_MAX_CONCURRENCY default: levels above it may be answered 429.
MAX_CONCURRENCY = 256
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """Utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (uvicorn's worker processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Level:
    """What one concurrency level measured."""

    workers: int
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    overloaded_429: int
    unavailable_503: int
    degraded: int
    transport_errors: int
    service_cpu: float
    redis_cpu: float
    loadgen_cpu: float
    machine_busy: float

    @property
    def rps(self) -> float:
        """Requests per second over the measured window."""
        return self.requests / self.seconds

    def bottleneck(self, cores: int) -> str:
        """What ran out first, from CPU shares (1.0 = one core busy)."""
        if self.workers == 1 and self.service_cpu >= 0.85:
            return "service event loop (1 core)"
        if self.redis_cpu >= 0.85:
            return "redis (1 core)"
        if self.service_cpu >= 0.85 * self.workers:
            return "service CPU (all workers)"
        ours = self.service_cpu + self.redis_cpu + self.loadgen_cpu
        if self.machine_busy >= 0.85:
            others = max(0.0, self.machine_busy * cores - ours)
            return f"machine CPU: {cores} cores busy ({others:.1f} cores used by other processes)"
        return "-"


def seed_statistics(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        client.delete(f"/v1/runs/{RUN}")
        client.put(f"/v1/runs/{RUN}", json={}).raise_for_status()
        for step in range(8):
            results = [
                {"prompt_id": p, "successes": (i * 7 + step) % 9, "trials": 8}
                for i, p in enumerate(PROMPTS)
            ]
            body = {"report_id": f"seed-{step}", "step": step, "results": results}
            client.post(f"/v1/runs/{RUN}/outcomes", json=body).raise_for_status()


async def client_loop(
    client: httpx.AsyncClient,
    index: int,
    deadline: float,
    latencies: list[float],
    bad: list[int],
    degraded: list[int],
) -> None:
    sequence = 0
    allocation = {"step": 100, "prompts": PROMPTS}
    while time.perf_counter() < deadline:
        sequence += 1
        if sequence % 2:
            path, body = f"/v1/runs/{RUN}/allocations", allocation
        else:
            results = [{"prompt_id": p, "successes": sequence % 5, "trials": 4} for p in PROMPTS]
            path = f"/v1/runs/{RUN}/outcomes"
            body = {
                "report_id": f"c{index}-{sequence}-{time.time_ns()}",
                "step": 100,
                "results": results,
            }
        started = time.perf_counter()
        try:
            response = await client.post(path, json=body)
        except httpx.TransportError:
            # Counted, not fatal: at high concurrency a keep-alive connection the server
            # closed after its idle timeout can race a new request (status 0 = no answer).
            bad.append(0)
            continue
        latencies.append(time.perf_counter() - started)
        if not response.is_success:
            bad.append(response.status_code)
        elif sequence % 2 and response.json().get("degraded"):
            degraded.append(1)


async def drive(
    url: str, concurrency: int, seconds: float
) -> tuple[list[float], list[int], list[int]]:
    latencies: list[float] = []
    bad: list[int] = []
    degraded: list[int] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        deadline = time.perf_counter() + 0.5  # warm the connections and caches
        await asyncio.gather(
            *(client_loop(client, i, deadline, [], [], []) for i in range(concurrency))
        )
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                client_loop(client, i, deadline, latencies, bad, degraded)
                for i in range(concurrency)
            )
        )
    return latencies, bad, degraded


def measure(
    service: ServiceProcess, redis_pid: int, workers: int, concurrency: int, seconds: float
) -> Level:
    service_pids = [service.pid, *children(service.pid)]
    machine_before = machine_ticks()
    before = [cpu_ticks(p) for p in service_pids], cpu_ticks(redis_pid), os.times()
    started = time.perf_counter()
    latencies, bad, degraded = asyncio.run(drive(service.url, concurrency, seconds))
    wall = time.perf_counter() - started
    after = [cpu_ticks(p) for p in service_pids], cpu_ticks(redis_pid), os.times()
    machine_after = machine_ticks()
    ordered = sorted(latencies)
    own = (after[2].user + after[2].system) - (before[2].user + before[2].system)
    return Level(
        workers=workers,
        concurrency=concurrency,
        requests=len(latencies),
        seconds=seconds,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        non_2xx=len(bad),
        overloaded_429=bad.count(429),
        unavailable_503=bad.count(503),
        degraded=len(degraded),
        transport_errors=bad.count(0),
        service_cpu=(sum(after[0]) - sum(before[0])) / TICKS / wall,
        redis_cpu=(after[1] - before[1]) / TICKS / wall,
        loadgen_cpu=own / wall,
        machine_busy=(machine_after[0] - machine_before[0])
        / max(1, machine_after[1] - machine_before[1]),
    )


def knee(levels: list[Level]) -> Level | None:
    within = [level for level in levels if level.p99_ms < P99_TARGET_MS and not level.non_2xx]
    return max(within, key=lambda level: level.rps) if within else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument(
        "--levels", default="1,2,4,8,16,32,64,128,192,256,320", help="concurrent clients"
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per level")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    note = (
        f"machine: {cores} cores shared by the service, redis-server and this load "
        "generator; figures are a floor, not a capacity plan"
    )
    if args.json:
        print(json.dumps({"note": note, "cores": cores}))
    else:
        print(f"NOTE: {note}\n")
    exit_status = 0
    for workers in [int(w) for w in args.workers.split(",")]:
        with (
            RedisServer() as redis_server,
            ServiceProcess(
                {"KRL_REDIS_URL": redis_server.url, "KRL_LOG_LEVEL": "warning"}, workers=workers
            ) as service,
        ):
            assert redis_server.process is not None
            seed_statistics(service.url)
            levels = []
            if not args.json:
                print(f"{workers} worker(s): allocate 256 prompts / report 256 results, mixed")
                print(
                    f"{'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non2xx':>6} "
                    f"{'429':>6} {'503':>4} {'degr':>4} {'conn':>4} "
                    f"{'svc cpu':>7} {'redis':>6} {'loadgen':>7} {'machine':>7}  saturated"
                )
            for concurrency in [int(c) for c in args.levels.split(",")]:
                level = measure(
                    service, redis_server.process.pid, workers, concurrency, args.seconds
                )
                levels.append(level)
                if args.json:
                    print(
                        json.dumps(
                            {
                                **level.__dict__,
                                "rps": round(level.rps, 1),
                                "bottleneck": level.bottleneck(cores),
                            }
                        )
                    )
                else:
                    print(
                        f"{concurrency:>7} {level.rps:>8.0f} {level.p50_ms:>7.1f} "
                        f"{level.p99_ms:>7.1f} {level.non_2xx:>6} {level.overloaded_429:>6} "
                        f"{level.unavailable_503:>4} {level.degraded:>4} "
                        f"{level.transport_errors:>4} {level.service_cpu:>7.0%} "
                        f"{level.redis_cpu:>6.0%} {level.loadgen_cpu:>7.0%} "
                        f"{level.machine_busy:>7.0%}  "
                        f"{level.bottleneck(cores)}"
                    )
                # Within the limit everything must succeed; past it only 429 is allowed.
                allowed = level.overloaded_429 if concurrency > MAX_CONCURRENCY else 0
                if level.non_2xx - allowed or level.degraded:
                    exit_status = 1
            best = knee(levels)
            peak = max(levels, key=lambda level: level.rps)
            summary = {
                "workers": workers,
                "knee_rps_p99_under_50ms": round(best.rps, 1) if best else None,
                "knee_clients": best.concurrency if best else None,
                "peak_rps": round(peak.rps, 1),
                "peak_clients": peak.concurrency,
                "saturated_by": peak.bottleneck(cores),
            }
            if args.json:
                print(json.dumps({"knee": summary}))
            else:
                print(
                    f"knee ({workers} worker(s)): {summary['knee_rps_p99_under_50ms']} req/s "
                    f"with p99 < 50 ms at {summary['knee_clients']} clients; peak "
                    f"{summary['peak_rps']} req/s at {summary['peak_clients']} clients, "
                    f"saturated by: {summary['saturated_by']}\n"
                )
    return exit_status


if __name__ == "__main__":
    sys.exit(main())
