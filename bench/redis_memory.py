"""Redis footprint per tracked prompt and report ingestion throughput of the stores.

Starts its own redis-server on a free port (or uses --url, which it FLUSHALLs), then:

1. Bytes per prompt: INFO used_memory before and after tracking --prompts prompts with
   ids of --id-length characters (inserted through `RedisStore.apply_report`), and
   MEMORY USAGE of the prompts hash divided by the count.
2. Ingestion: --concurrency coroutines each apply reports of --group prompts (8 trials
   each) through the store; outcomes/s = rollouts applied per second of wall time.
   The memory store is measured the same way for comparison.
3. read_batch latency for --group ids (one round trip).

Usage:
    .venv/bin/python bench/redis_memory.py [--prompts 100000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import string
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from knapsack_service.store import (
    GroupOutcome,
    MemoryStore,
    RedisStore,
    ReportToApply,
    Store,
)
from knapsack_service.store.keys import RunKeys
from tests.support.redis_server import RedisServer

TRIALS_PER_GROUP = 8


def make_ids(count: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    width = len(str(count))
    return [
        "".join(rng.choices(alphabet, k=max(length - width - 1, 1))) + f"-{i:0{width}d}"
        for i in range(count)
    ]


def make_report(report_id: str, step: int, ids: list[str], rng: random.Random) -> ReportToApply:
    groups = []
    for pid in ids:
        s = rng.randint(0, TRIALS_PER_GROUP)
        groups.append(GroupOutcome(pid, s, TRIALS_PER_GROUP, 500.0, s in (0, TRIALS_PER_GROUP)))
    return ReportToApply(report_id, step, 0.9, tuple(groups))


async def measure_memory(url: str, prompts: int, id_length: int) -> dict:
    ids = make_ids(prompts, id_length, seed=1)
    store = RedisStore.from_url(url, timeout=30.0)
    sync = redis.Redis.from_url(url)
    try:
        await store.put_settings("mem", "{}")
        before = int(sync.info("memory")["used_memory"])
        rng = random.Random(2)
        chunk = 1000
        for start in range(0, prompts, chunk):
            await store.apply_report(
                "mem", make_report(f"m{start}", 0, ids[start : start + chunk], rng)
            )
        after = int(sync.info("memory")["used_memory"])
        key = RunKeys("mem").prompts
        usage = int(sync.memory_usage(key, samples=0))
        count = int(sync.hlen(key))
        encoding = sync.object("encoding", key).decode()
    finally:
        sync.close()
        await store.close()
    return {
        "bench": "redis_bytes_per_prompt",
        "prompts": count,
        "id_length": id_length,
        "used_memory_delta_bytes": after - before,
        "bytes_per_prompt_used_memory": (after - before) / count,
        "bytes_per_prompt_memory_usage": usage / count,
        "hash_encoding": encoding,
    }


async def measure_ingestion(
    store: Store, name: str, reports: int, group: int, concurrency: int, pool: int
) -> dict:
    ids = make_ids(pool, 20, seed=3)
    await store.put_settings("ingest", "{}")
    per_worker = reports // concurrency
    prepared = []
    for w in range(concurrency):
        rng = random.Random(100 + w)
        prepared.append(
            [make_report(f"w{w}-r{r}", r, rng.sample(ids, group), rng) for r in range(per_worker)]
        )

    async def worker(batch: list[ReportToApply]) -> None:
        for report in batch:
            await store.apply_report("ingest", report)

    started = time.perf_counter()
    await asyncio.gather(*(worker(batch) for batch in prepared))
    elapsed = time.perf_counter() - started
    applied = per_worker * concurrency
    counters = await store.read_counters("ingest")
    assert counters["reports"] == applied, counters

    latencies = []
    rng = random.Random(9)
    for _ in range(50):
        sample = rng.sample(ids, group)
        t0 = time.perf_counter()
        await store.read_batch("ingest", sample)
        latencies.append(time.perf_counter() - t0)
    return {
        "bench": "ingestion",
        "store": name,
        "reports": applied,
        "prompts_per_report": group,
        "concurrency": concurrency,
        "seconds": elapsed,
        "reports_per_s": applied / elapsed,
        "groups_per_s": applied * group / elapsed,
        "outcomes_per_s": applied * group * TRIALS_PER_GROUP / elapsed,
        "read_batch_p50_ms": statistics.median(latencies) * 1e3,
    }


async def run_all(args: argparse.Namespace, url: str) -> list[dict]:
    rows = [await measure_memory(url, args.prompts, args.id_length)]
    redis.Redis.from_url(url).flushall()
    redis_store = RedisStore.from_url(url, timeout=30.0)
    try:
        rows.append(
            await measure_ingestion(
                redis_store, "redis", args.reports, args.group, args.concurrency, args.pool
            )
        )
    finally:
        await redis_store.close()
    rows.append(
        await measure_ingestion(
            MemoryStore(), "memory", args.reports, args.group, args.concurrency, args.pool
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--id-length", type=int, default=20)
    parser.add_argument("--reports", type=int, default=400, help="reports in the ingestion run")
    parser.add_argument("--group", type=int, default=256, help="prompts per report")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pool", type=int, default=20_000, help="distinct prompts ingested")
    parser.add_argument("--url", help="use this Redis (it is FLUSHALLed) instead of starting one")
    parser.add_argument("--json", action="store_true", help="print one JSON line per result")
    args = parser.parse_args()

    if args.url:
        redis.Redis.from_url(args.url).flushall()
        rows = asyncio.run(run_all(args, args.url))
        version = redis.Redis.from_url(args.url).info("server")["redis_version"]
    else:
        with RedisServer() as server:
            rows = asyncio.run(run_all(args, server.url))
            version = redis.Redis.from_url(server.url).info("server")["redis_version"]

    if args.json:
        for row in rows:
            print(json.dumps({**row, "redis_version": version}))
        return
    mem, *ingest = rows
    print(f"redis {version}: {mem['prompts']} prompts, ids of {mem['id_length']} chars")
    print(f"  hash encoding                 {mem['hash_encoding']}")
    print(f"  used_memory delta / prompt    {mem['bytes_per_prompt_used_memory']:.1f} B")
    print(f"  MEMORY USAGE hash / prompt    {mem['bytes_per_prompt_memory_usage']:.1f} B")
    print()
    header = f"{'store':<8}{'reports':>9}{'reports/s':>11}{'groups/s':>11}{'outcomes/s':>12}"
    print(header + f"{'read256 p50':>13}")
    for row in ingest:
        print(
            f"{row['store']:<8}{row['reports']:>9}{row['reports_per_s']:>11.0f}"
            f"{row['groups_per_s']:>11.0f}{row['outcomes_per_s']:>12.0f}"
            f"{row['read_batch_p50_ms']:>11.2f}ms"
        )
    print(
        f"(concurrency {ingest[0]['concurrency']}, {ingest[0]['prompts_per_report']} prompts "
        f"x {TRIALS_PER_GROUP} trials per report)"
    )


if __name__ == "__main__":
    main()
