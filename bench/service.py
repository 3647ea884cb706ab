"""Service benchmark through real HTTP (uvicorn on a port) and a real redis-server.

Measures what ARCHITECTURE.md sets targets for:
- allocate 1024 prompts with known statistics, 8 shards: p50 / p99 latency, and its ratio
  to the floor measured in the same run (an empty HTTP round trip to /healthz plus one
  HMGET of the 1024 fields; issue 13: at most 1.5x);
- report ingestion with 4 concurrent reporters: rollout outcomes per second (>= 200k/s);
- Redis bytes per tracked prompt at 100k prompts (<= 150);
- cold start to ready with a warm numba cache (issue 13: <= 1.5 s).

    python bench/service.py [--json] [--requests 400] [--seconds 5]
    python bench/service.py --baseline-src /tmp/old/service/src   # A/B, see below

With `--lua-baseline OLD.lua`, only the report script is compared: the same reports
(256 groups) go through the old script and the working tree's on two runs of one
redis-server, alternating, and Redis' own time per call (INFO commandstats) is
reported; the replies and the records written must be identical.

With `--baseline-src`, a second service runs the code under that directory (for
example `git archive HEAD service/src | tar -x -C /tmp/old`) beside the working tree's,
on the same redis-server, and the allocate and ingest cases alternate between the
two in rounds (medians over rounds): on a shared machine only such side-by-side
figures compare.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(redis_url: str, source: str | None = None) -> tuple[subprocess.Popen, str, float]:
    """Start `knapsack-service serve`; return it, its URL and the seconds until /readyz.

    `source` puts another copy of the service's sources first on the path (A/B runs).
    """
    port = free_port()
    env = {**os.environ, "KRL_REDIS_URL": redis_url, "KRL_LOG_LEVEL": "warning"}
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "knapsack_service.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = started + 60
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=0.5).status_code == 200:
                return process, url, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("service did not become ready in 60 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def seed_allocation_run(client: httpx.Client, run: str, prompts: list[str]) -> None:
    """A run whose 1024 prompts all have statistics (two reports of 8 outcomes each)."""
    client.put(
        f"/v1/runs/{run}",
        json={"estimator": {"kind": "window", "window": 16, "min_observations": 4}},
    )
    for step in range(2):
        results = [
            {"prompt_id": p, "successes": (i * 7 + step) % 9, "trials": 8}
            for i, p in enumerate(prompts)
        ]
        client.post(
            f"/v1/runs/{run}/outcomes",
            json={"report_id": f"seed-{step}", "step": step, "results": results},
        )


_FIRST_FREE_STEP = [2]  # the seeding reports take steps 0 and 1


def next_steps(count: int) -> int:
    """The first of `count` steps no allocation of this process used yet.

    Steps stay close to the run's last reported step: the service refuses steps more
    than KRL_MAX_STEP_AHEAD beyond it.
    """
    first = _FIRST_FREE_STEP[0]
    _FIRST_FREE_STEP[0] += count
    return first


def allocation_bodies(prompts: list[str], first_step: int, count: int) -> list[bytes]:
    """Encoded allocation requests, one per step.

    A step's plan is kept, so a repeated step would measure the replay of a kept plan,
    not an allocation.
    """
    return [
        json.dumps({"step": step, "prompts": prompts, "budget": 8192, "workers": 8}).encode()
        for step in range(first_step, first_step + count)
    ]


def allocate_latencies(url: str, requests: int, run: str = "bench-alloc") -> list[float]:
    """Seconds per HTTP allocation of 1024 prompts with known statistics, 8 shards."""
    prompts = [f"gsm8k-{i:06d}" for i in range(1024)]
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=10) as client:
        seed_allocation_run(client, run, prompts)
        step = next_steps(requests + 20)
        for body in allocation_bodies(prompts, step, 20):  # warm connections and caches
            client.post(f"/v1/runs/{run}/allocations", content=body, headers=headers)
        latencies = []
        for body in allocation_bodies(prompts, step + 20, requests):
            started = time.perf_counter()
            response = client.post(f"/v1/runs/{run}/allocations", content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200 and not response.json()["degraded"]
    return latencies


def bench_allocate(url: str, requests: int) -> dict:
    latencies = allocate_latencies(url, requests)
    return {
        "case": "allocate_1024",
        "requests": requests,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def bench_allocate_vs_floor(url: str, redis_url: str, requests: int) -> list[dict]:
    """Allocation of 1024 prompts (8 shards) against its floor, interleaved in one run.

    The floor is what any allocation must pay: an empty HTTP round trip (`/healthz`)
    plus one HMGET of the 1024 prompts' fields from the same Redis. Each round takes
    one of each, so machine noise falls on all three alike.
    """
    run = "bench-floor"
    prompts = [f"gsm8k-{i:06d}" for i in range(1024)]
    headers = {"Content-Type": "application/json"}
    key = f"krl:{{{run}}}:p"
    fields = [p.encode() for p in prompts]
    times: dict[str, list[float]] = {"healthz": [], "hmget": [], "allocate": []}
    r = redis.Redis.from_url(redis_url)
    with httpx.Client(base_url=url, timeout=10) as client:
        seed_allocation_run(client, run, prompts)
        assert all(r.hmget(key, fields)), "the bench's key layout no longer matches the store"
        step = next_steps(requests + 20)
        for body in allocation_bodies(prompts, step, 20):  # warm connections and caches
            client.post(f"/v1/runs/{run}/allocations", content=body, headers=headers)
            client.get("/healthz")
            r.hmget(key, fields)
        for body in allocation_bodies(prompts, step + 20, requests):
            started = time.perf_counter()
            client.get("/healthz")
            times["healthz"].append(time.perf_counter() - started)
            started = time.perf_counter()
            r.hmget(key, fields)
            times["hmget"].append(time.perf_counter() - started)
            started = time.perf_counter()
            response = client.post(f"/v1/runs/{run}/allocations", content=body, headers=headers)
            times["allocate"].append(time.perf_counter() - started)
            assert response.status_code == 200 and not response.json()["degraded"]
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    floor = medians["healthz"] + medians["hmget"]
    return [
        {
            "case": "allocate_1024_vs_floor",
            "requests": requests,
            "allocate_p50_ms": medians["allocate"],
            "allocate_p99_ms": percentile(times["allocate"], 0.99) * 1000,
            "healthz_p50_ms": medians["healthz"],
            "hmget_1024_p50_ms": medians["hmget"],
            "floor_ms": floor,
            "ratio_to_floor": medians["allocate"] / floor,
        }
    ]


def bench_ingest(url: str, seconds: float, reporters: int = 4, run: str = "bench-ingest") -> dict:
    prompts = [f"ingest-{i:06d}" for i in range(4096)]
    with httpx.Client(base_url=url) as client:
        client.put(f"/v1/runs/{run}", json={})
    counts = [0] * reporters
    stop_at = time.perf_counter() + seconds

    def reporter(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            sequence = 0
            while time.perf_counter() < stop_at:
                chunk = prompts[(sequence * 256) % 4096 : (sequence * 256) % 4096 + 256]
                results = [{"prompt_id": p, "successes": 3, "trials": 8} for p in chunk]
                response = client.post(
                    f"/v1/runs/{run}/outcomes",
                    json={
                        "report_id": f"w{worker}-{sequence}",
                        "step": sequence,
                        "results": results,
                    },
                )
                assert response.status_code == 200, response.text
                counts[worker] += 8 * len(results)
                sequence += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=reporter, args=(w,)) for w in range(reporters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "case": "ingest_4_reporters",
        "outcomes": sum(counts),
        "outcomes_per_second": sum(counts) / elapsed,
        "seconds": elapsed,
        "reports_per_second": sum(counts) / 2048 / elapsed,
    }


def bench_memory(url: str, redis_url: str, prompts: int = 100_000) -> dict:
    r = redis.Redis.from_url(redis_url)
    with httpx.Client(base_url=url, timeout=60) as client:
        client.put("/v1/runs/bench-mem", json={})
        before = r.info("memory")["used_memory"]
        for start in range(0, prompts, 5000):
            results = [
                {
                    "prompt_id": f"dataset-prompt-{i:08d}",
                    "successes": i % 5,
                    "trials": 8,
                    "mean_response_tokens": 400.0,
                }
                for i in range(start, start + 5000)
            ]
            response = client.post(
                "/v1/runs/bench-mem/outcomes",
                json={"report_id": f"m{start}", "step": 0, "results": results},
            )
            assert response.status_code == 200, response.text
        after = r.info("memory")["used_memory"]
    return {
        "case": "redis_bytes_per_prompt",
        "prompts": prompts,
        "bytes_per_prompt": (after - before) / prompts,
        "id_length": 23,
    }


def compare_lua(old_script: str, reports: int) -> list[dict]:
    """Server-side microseconds per apply_report call, old script vs working tree's."""
    new_script = ROOT / "service/src/knapsack_service/store/lua/apply_report.lua"
    rng = np.random.default_rng(1)
    prompts = [f"prompt-{i:06d}" for i in range(4096)]
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        shas = {
            "old": r.script_load(Path(old_script).read_text()),
            "new": r.script_load(new_script.read_text()),
        }
        usec: dict[str, list[int]] = {"old": [], "new": []}
        replies_equal = True
        for label in shas:
            r.set(f"krl:{{{label}}}:cfg", "{}")
        for index in range(reports):
            step = index // 4 if index % 7 else max(index // 4 - 2, 0)  # some late reports
            args = [f"r-{index}", str(step), "0.9", str(7 * 24 * 3600), "256"]
            for pid in rng.choice(prompts, 256, replace=False).tolist():
                trials = int(rng.choice([8, 16]))
                successes = int(rng.integers(0, trials + 1))
                tokens = "" if rng.random() < 0.2 else repr(float(rng.random() * 500))
                zero = "1" if successes in (0, trials) else "0"
                args += [pid, str(successes), str(trials), tokens, zero]
            replies = []
            for label in ("old", "new") if index % 2 == 0 else ("new", "old"):
                keys = [f"krl:{{{label}}}:{k}" for k in ("cfg", "meta", "p", "steps", "rids")]
                keys.append(f"krl:{{{label}}}:s:{step}")
                before = r.info("commandstats")["cmdstat_evalsha"]["usec"] if index else 0
                replies.append(r.evalsha(shas[label], len(keys), *keys, *args))
                usec[label].append(r.info("commandstats")["cmdstat_evalsha"]["usec"] - before)
            replies_equal &= replies[0] == replies[1]
        records_equal = r.hgetall("krl:{old}:p") == r.hgetall("krl:{new}:p")
    return [
        {
            "case": f"apply_report.lua 256 groups {label}",
            "reports": reports,
            "redis_usec_per_call": statistics.median(usec[label][1:]),
            "replies_equal": replies_equal,
            "records_equal": records_equal,
            "load_average": list(os.getloadavg()),
        }
        for label in ("old", "new")
    ]


def compare(baseline_src: str, rounds: int, requests: int, seconds: float) -> list[dict]:
    """Old (baseline_src) and new services side by side, alternating per round."""
    rows = []
    with RedisServer() as server:
        services = {
            "old": start_service(server.url, baseline_src),
            "new": start_service(server.url),
        }
        try:
            latencies: dict[str, list[float]] = {"old": [], "new": []}
            rates: dict[str, list[float]] = {"old": [], "new": []}
            for index in range(rounds):
                for label in ("old", "new") if index % 2 == 0 else ("new", "old"):
                    url = services[label][1]
                    latencies[label] += allocate_latencies(url, requests, f"alloc-{label}")
                    ingest = bench_ingest(url, seconds, run=f"ingest-{label}-{index}")
                    rates[label].append(ingest["outcomes_per_second"])
            for label in ("old", "new"):
                rows.append(
                    {
                        "case": f"allocate_1024 {label}",
                        "requests": len(latencies[label]),
                        "p50_ms": statistics.median(latencies[label]) * 1000,
                        "p99_ms": percentile(latencies[label], 0.99) * 1000,
                    }
                )
                rows.append(
                    {
                        "case": f"ingest_4_reporters {label}",
                        "rounds": rounds,
                        "outcomes_per_second": statistics.median(rates[label]),
                        "per_round": [round(rate) for rate in rates[label]],
                    }
                )
        finally:
            for process, _url, _ready in services.values():
                stop(process)
    rows.append({"case": "load_average", "values": list(os.getloadavg())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--baseline-src", help="A/B against the service sources in this folder")
    parser.add_argument("--rounds", type=int, default=4, help="A/B rounds (alternating order)")
    parser.add_argument("--lua-baseline", help="A/B of apply_report.lua against this script")
    parser.add_argument(
        "--only", choices=["floor", "cold"], help="only the allocation-vs-floor or cold-start case"
    )
    args = parser.parse_args()
    rows = []
    if args.lua_baseline:
        rows = compare_lua(args.lua_baseline, args.requests)
    elif args.baseline_src:
        rows = compare(args.baseline_src, args.rounds, args.requests, args.seconds)
    elif args.only:
        rows = measure_only(args.only, args.requests)
    else:
        rows = measure(args.requests, args.seconds)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'case':34} {'figure':>40}")
    for row in rows:
        figures = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in row.items()
            if k != "case"
        )
        print(f"{row['case']:34} {figures:>40}")


def measure(requests: int, seconds: float) -> list[dict]:
    """Every case once, on the working tree's service."""
    rows = []
    with RedisServer() as server:
        process, url, _first = start_service(server.url)  # compiles or fills the numba cache
        try:
            rows += bench_allocate_vs_floor(url, server.url, requests)
            rows.append(bench_ingest(url, seconds))
            rows.append(bench_memory(url, server.url))
        finally:
            stop(process)
        process, url, warm = start_service(server.url)
        stop(process)
        rows.append({"case": "cold_start_to_ready_warm_cache", "seconds": warm})
    rows.append({"case": "load_average", "values": list(os.getloadavg())})
    return rows


def measure_only(case: str, requests: int) -> list[dict]:
    """One case on the working tree's service (short runs on a shared machine)."""
    rows = []
    with RedisServer() as server:
        process, url, _first = start_service(server.url)
        try:
            if case == "floor":
                rows += bench_allocate_vs_floor(url, server.url, requests)
        finally:
            stop(process)
        if case == "cold":
            for _ in range(3):
                process, url, warm = start_service(server.url)
                stop(process)
                rows.append({"case": "cold_start_to_ready_warm_cache", "seconds": warm})
    rows.append({"case": "load_average", "values": list(os.getloadavg())})
    return rows


if __name__ == "__main__":
    main()
