"""Slow-client attacks against real uvicorn on Redis: does an authenticated trainer notice?

Starts `knapsack-service serve` with tokens and `KRL_MAX_CONCURRENCY=16` on a fresh
redis-server, then, for each attack, opens the attacking connections and meanwhile
sends authenticated lookups one after another for `--seconds`, measuring their
statuses and latency (p50/p99/max), how long 429s lasted, and the service's peak
resident memory. Attackers run in processes of their own, so they do not share the
measuring client's interpreter lock:

- `unauth-trickle`: 20 uploads without a token announce 1 MB and trickle one byte
  every 100 ms (on the old code they held every slot: authenticated requests got 429);
- `unauth-large`: 20 uploads without a token send 13 MB bodies at full speed (on the
  old code parsed before the 401);
- `auth-trickle`: 20 uploads *with* a token trickle one byte every 100 ms: they take
  slots, and the body deadline (2 s grace, then `KRL_BODY_MIN_RATE`) frees them;
- `auth-chunked`: 20 chunked uploads with a token stream 15 MiB each (counted in
  flight and against the size limit as they stream).

    python bench/slow_clients.py [--seconds 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.service_process import ServiceProcess  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ATTACKERS = 20
MAX_CONCURRENCY = 16
RUN = "slow-run"
PROMPTS = [f"p{i}" for i in range(256)]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def connect(port: int, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head.encode())
    return sock


def head(path: str, *, token: bool, framing: str) -> str:
    auth = f"Authorization: Bearer {TOKEN}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{auth}{framing}\r\n\r\n"
    )


def trickle(port: int, token: bool, stop: Event) -> None:
    path = f"/v1/runs/{RUN}/outcomes"
    try:
        with connect(port, head(path, token=token, framing="Content-Length: 1000000")) as sock:
            while not stop.is_set():
                sock.sendall(b" ")
                time.sleep(0.1)
    except OSError:
        pass  # answered (401, 408) and closed


def large(port: int, token: bool, stop: Event) -> None:
    body = b" " * (13 * 2**20)
    path = f"/v1/runs/{RUN}/outcomes"
    while not stop.is_set():
        try:
            framing = f"Content-Length: {len(body)}"
            with connect(port, head(path, token=token, framing=framing)) as s:
                s.sendall(body)
                s.recv(1024)
        except OSError:
            pass


def chunked(port: int, token: bool, stop: Event) -> None:
    piece = b" " * 65536
    frame = b"%x\r\n%s\r\n" % (len(piece), piece)
    path = f"/v1/runs/{RUN}/outcomes"
    while not stop.is_set():
        try:
            with connect(port, head(path, token=token, framing="Transfer-Encoding: chunked")) as s:
                for _ in range(240):  # 15 MiB
                    if stop.is_set():
                        break
                    s.sendall(frame)
                s.sendall(b"0\r\n\r\n")
                s.recv(1024)
        except OSError:
            pass


def idle(port: int, token: bool, stop: Event) -> None:
    """No attack: the baseline."""


ATTACKS: dict[str, tuple[Callable[[int, bool, Event], None], bool]] = {
    "none": (idle, False),
    "unauth-trickle": (trickle, False),
    "unauth-large": (large, False),
    "auth-trickle": (trickle, True),
    "auth-chunked": (chunked, True),
}


def measure(service: ServiceProcess, attack: str, seconds: float) -> dict:
    target, token = ATTACKS[attack]
    stop = multiprocessing.Event()
    threads = [
        multiprocessing.Process(target=target, args=(service.port, token, stop), daemon=True)
        for _ in range(ATTACKERS if attack != "none" else 0)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the attack is under way
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    refused_at: list[float] = []
    peak_rss = 0
    with httpx.Client(base_url=service.url, headers=AUTH, timeout=30) as client:
        begin = time.monotonic()
        deadline = begin + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = client.post(f"/v1/runs/{RUN}/prompts/lookup", json={"prompt_ids": PROMPTS})
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1
            if response.status_code == 429:
                refused_at.append(time.monotonic() - begin)
            peak_rss = max(peak_rss, rss_bytes(service.pid))
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
        if thread.is_alive():
            thread.kill()
    ordered = sorted(latencies)
    return {
        "attack": attack,
        "attackers": len(threads),
        "requests": len(latencies),
        "statuses": dict(statuses),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "peak_rss_mb": round(peak_rss / 2**20),
        "last_429_s": round(refused_at[-1], 2) if refused_at else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per attack")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args()
    env = {"KRL_API_TOKENS": TOKEN, "KRL_MAX_CONCURRENCY": str(MAX_CONCURRENCY)}
    with RedisServer() as redis_server:
        env["KRL_REDIS_URL"] = redis_server.url
        env["KRL_LOG_LEVEL"] = "warning"
        with ServiceProcess(env) as service:
            with httpx.Client(base_url=service.url, headers=AUTH, timeout=30) as client:
                client.put(f"/v1/runs/{RUN}", json={}).raise_for_status()
            if not args.json:
                print(f"{'attack':<15} {'conns':>5} {'reqs':>5} {'p50 ms':>7} {'p99 ms':>7} "
                      f"{'max ms':>7} {'rss MB':>6} {'429 until':>9}  statuses")  # fmt: skip
            failed = False
            for attack in ATTACKS:
                row = measure(service, attack, args.seconds)
                # Unauthenticated attacks must not cost a single authenticated request.
                failed |= attack.startswith(("none", "unauth")) and set(row["statuses"]) != {200}
                if args.json:
                    print(json.dumps(row))
                else:
                    print(
                        f"{attack:<15} {row['attackers']:>5} {row['requests']:>5} "
                        f"{row['p50_ms']:>7} {row['p99_ms']:>7} {row['max_ms']:>7} "
                        f"{row['peak_rss_mb']:>6} {row['last_429_s']!s:>9}  {row['statuses']}"
                    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
