"""Hostile and malformed requests against the live service: the status each got, by kind.

Starts a redis-server and `knapsack-service serve` (tokens, KRL_MAX_PROMPTS=50, metrics
behind the token), sends every request of `tests/reliability/bad_inputs.py`, and prints
a table (or `--json` lines). Any 5xx, or an error outside the contract's JSON shape,
makes the exit status 1.

    python bench/bad_inputs.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.bad_inputs import SERVICE_ENV, send_all  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.service_process import ServiceProcess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    with (
        RedisServer() as redis_server,
        ServiceProcess({**SERVICE_ENV, "KRL_REDIS_URL": redis_server.url}) as service,
    ):
        with httpx.Client(base_url=service.url, timeout=60) as client:
            outcomes = send_all(client)
        crashed = "exception" in service.log_text()
    bad = [o for o in outcomes if not 400 <= o.status < 500 or o.code is None]
    if args.json:
        for o in outcomes:
            print(
                json.dumps(
                    {
                        "kind": o.bad.kind,
                        "input": o.bad.name,
                        "method": o.bad.method,
                        "status": o.status,
                        "code": o.code,
                    }
                )
            )
        by_kind = Counter((o.bad.kind, o.status) for o in outcomes)
        print(
            json.dumps(
                {
                    "summary": {f"{k} {s}": n for (k, s), n in sorted(by_kind.items())},
                    "inputs": len(outcomes),
                    "not_4xx_or_shape": len(bad),
                    "service_logged_exception": crashed,
                }
            )
        )
    else:
        print(f"{'kind':<8} {'input':<42} {'status':>6}  code")
        for o in outcomes:
            print(f"{o.bad.kind:<8} {o.bad.name:<42} {o.status:>6}  {o.code}")
        print()
        print(f"{'kind':<8} statuses")
        kinds = dict.fromkeys(o.bad.kind for o in outcomes)
        for kind in kinds:
            counts = Counter(o.status for o in outcomes if o.bad.kind == kind)
            print(f"{kind:<8} " + ", ".join(f"{s}: {n}" for s, n in sorted(counts.items())))
        print(
            f"\n{len(outcomes)} bad inputs, {len(bad)} answered outside 4xx/contract shape, "
            f"service logged an exception: {crashed}"
        )
    return 1 if bad or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
