"""Time one outcome report holds Redis, by report size: the basis of KRL_MAX_REPORT_RESULTS.

Redis runs a report's script alone: every other run waits behind it, and a script
longer than the socket timeout (0.5 s) makes its own report answer 503 while it
still completes. For each size, applies `--repeats` reports of fresh prompts and of
prompts already known through the real `RedisStore`, and reads the script's own
duration from Redis' SLOWLOG (server-side time only, no network, no Python).

    python bench/report_script.py [--sizes 1024,2048,4096,8192,16384] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knapsack_service.store import GroupOutcome, RedisStore, ReportToApply  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

TARGET_MS = 50.0


async def script_ms(store: RedisStore, report: ReportToApply) -> float:
    await store.client.slowlog_reset()
    await store.apply_report("run", report)
    entries = await store.client.slowlog_get(50)
    return max(entry["duration"] for entry in entries) / 1000


async def measure(url: str, sizes: list[int], repeats: int) -> list[dict]:
    store = RedisStore.from_url(url, timeout=30)
    await store.put_settings("run", "{}")
    rows = []
    try:
        for size in sizes:
            for kind in ("new", "known"):
                durations = []
                for repeat in range(repeats):
                    prefix = f"{size}-{repeat}" if kind == "new" else f"{size}-known"
                    groups = tuple(GroupOutcome(f"{prefix}-{i}", i % 5, 8) for i in range(size))
                    report = ReportToApply(f"{kind}-{size}-{repeat}", 1, 0.9, groups)
                    durations.append(await script_ms(store, report))
                rows.append(
                    {
                        "results": size,
                        "prompts": kind,
                        "min_ms": round(min(durations), 1),
                        "median_ms": round(statistics.median(durations), 1),
                        "max_ms": round(max(durations), 1),
                        "us_per_result": round(1000 * statistics.median(durations) / size, 2),
                    }
                )
    finally:
        await store.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048,4096,8192,16384")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with RedisServer(extra_args=("--slowlog-log-slower-than", "0")) as server:
        rows = asyncio.run(measure(server.url, sizes, args.repeats))
    if not args.json:
        header = ("results", "prompts", "min ms", "median", "max ms", "us/res")
        print(" ".join(f"{name:>8}" if i == 0 else f"{name:>7}" for i, name in enumerate(header)))
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['results']:>8} {row['prompts']:>7} {row['min_ms']:>7} "
                f"{row['median_ms']:>7} {row['max_ms']:>7} {row['us_per_result']:>7}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
