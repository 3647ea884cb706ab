"""Service benchmark through real HTTP (uvicorn on a port) and a real redis-server.

Measures what ARCHITECTURE.md sets targets for:
- allocate 1024 prompts with known statistics: p50 / p99 latency (target 3 / 15 ms);
- report ingestion with 4 concurrent reporters: rollout outcomes per second (>= 200k/s);
- Redis bytes per tracked prompt at 100k prompts (<= 150);
- cold start to ready with a warm numba cache (<= 3 s).

    python bench/service.py [--json] [--requests 400] [--seconds 5]
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
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(redis_url: str) -> tuple[subprocess.Popen, str, float]:
    """Start `knapsack-service serve`; return it, its URL and the seconds until /readyz."""
    port = free_port()
    env = {**os.environ, "KRL_REDIS_URL": redis_url, "KRL_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "knapsack_service.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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


def bench_allocate(url: str, requests: int) -> dict:
    prompts = [f"gsm8k-{i:06d}" for i in range(1024)]
    with httpx.Client(base_url=url, timeout=10) as client:
        client.put("/v1/runs/bench-alloc", json={"estimator": {"kind": "window", "window": 16,
                                                               "min_observations": 4}})
        for step in range(2):
            results = [{"prompt_id": p, "successes": (i * 7 + step) % 9, "trials": 8}
                       for i, p in enumerate(prompts)]
            client.post("/v1/runs/bench-alloc/outcomes",
                        json={"report_id": f"seed-{step}", "step": step, "results": results})
        body = {"step": 3, "prompts": prompts, "budget": 8192, "workers": 8}
        for _ in range(20):  # warm connections and caches
            client.post("/v1/runs/bench-alloc/allocations", json=body)
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.post("/v1/runs/bench-alloc/allocations", json=body)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200 and not response.json()["degraded"]
    return {
        "case": "allocate_1024",
        "requests": requests,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def bench_ingest(url: str, seconds: float, reporters: int = 4) -> dict:
    prompts = [f"ingest-{i:06d}" for i in range(4096)]
    with httpx.Client(base_url=url) as client:
        client.put("/v1/runs/bench-ingest", json={})
    counts = [0] * reporters
    stop_at = time.perf_counter() + seconds

    def reporter(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            sequence = 0
            while time.perf_counter() < stop_at:
                chunk = prompts[(sequence * 256) % 4096:(sequence * 256) % 4096 + 256]
                results = [{"prompt_id": p, "successes": 3, "trials": 8} for p in chunk]
                response = client.post("/v1/runs/bench-ingest/outcomes", json={
                    "report_id": f"w{worker}-{sequence}", "step": sequence, "results": results})
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
    return {"case": "ingest_4_reporters", "outcomes": sum(counts),
            "outcomes_per_second": sum(counts) / elapsed, "seconds": elapsed,
            "reports_per_second": sum(counts) / 2048 / elapsed}


def bench_memory(url: str, redis_url: str, prompts: int = 100_000) -> dict:
    r = redis.Redis.from_url(redis_url)
    with httpx.Client(base_url=url, timeout=60) as client:
        client.put("/v1/runs/bench-mem", json={})
        before = r.info("memory")["used_memory"]
        for start in range(0, prompts, 5000):
            results = [{"prompt_id": f"dataset-prompt-{i:08d}", "successes": i % 5, "trials": 8,
                        "mean_response_tokens": 400.0} for i in range(start, start + 5000)]
            response = client.post("/v1/runs/bench-mem/outcomes", json={
                "report_id": f"m{start}", "step": 0, "results": results})
            assert response.status_code == 200, response.text
        after = r.info("memory")["used_memory"]
    return {"case": "redis_bytes_per_prompt", "prompts": prompts,
            "bytes_per_prompt": (after - before) / prompts, "id_length": 23}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows = []
    with RedisServer() as server:
        process, url, _first = start_service(server.url)  # compiles or fills the numba cache
        try:
            rows.append(bench_allocate(url, args.requests))
            rows.append(bench_ingest(url, args.seconds))
            rows.append(bench_memory(url, server.url))
        finally:
            stop(process)
        process, url, warm = start_service(server.url)
        stop(process)
        rows.append({"case": "cold_start_to_ready_warm_cache", "seconds": warm})
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'case':34} {'figure':>40}")
    for row in rows:
        figures = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in row.items() if k != "case")
        print(f"{row['case']:34} {figures:>40}")


if __name__ == "__main__":
    main()
