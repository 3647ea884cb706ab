"""Contract fuzzing, full configuration: schemathesis until N requests, on real Redis.

Starts a redis-server and `knapsack-service serve` (a token, metrics behind it,
KRL_MAX_PROMPTS=1000) and runs schemathesis rounds (all phases: examples, coverage,
fuzzing in positive and negative modes, stateful sequences over inferred links)
with successive seeds until `--requests` requests were sent; one round in five is
sent without a token. Prints the totals, the distinct failures of each check, and
any traceback the service logged; exit status 1 on a 5xx or a contract failure.

    python bench/fuzz.py [--requests 10000] [--examples 60] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.fuzzing import (  # noqa: E402
    CONTRACT_CHECKS,
    FuzzResult,
    run_round,
    server_tracebacks,
)
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.service_process import ServiceProcess  # noqa: E402

TOKEN = "fuzz-full-token-7e6d5c"


def fuzz(requests: int, examples: int, seed: int, workers: int) -> tuple[FuzzResult, list[str]]:
    total = FuzzResult()
    with tempfile.TemporaryDirectory(prefix="krl-fuzz-") as scratch, RedisServer() as redis_server:
        env = {
            "KRL_REDIS_URL": redis_server.url,
            "KRL_API_TOKENS": TOKEN,
            "KRL_METRICS_REQUIRE_TOKEN": "true",
            "KRL_MAX_PROMPTS": "1000",
        }
        with ServiceProcess(env, log_path=Path(scratch) / "service.log") as service:
            round_index = 0
            while total.requests < requests:
                unauthenticated = round_index % 5 == 4
                result = run_round(
                    service.url,
                    Path(scratch) / "reports",
                    token=None if unauthenticated else TOKEN,
                    max_examples=max(5, examples // 4) if unauthenticated else examples,
                    seed=seed + round_index,
                    workers=workers,
                )
                total.merge(result)
                round_index += 1
                print(
                    f"round {round_index} (seed {seed + round_index - 1}"
                    f"{', no token' if unauthenticated else ''}): {result.requests} requests,"
                    f" {result.responses_5xx} 5xx; total {total.requests}",
                    file=sys.stderr,
                    flush=True,
                )
            tracebacks = server_tracebacks(service.log_text())
    return total, tracebacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="stop after this many")
    parser.add_argument("--examples", type=int, default=60, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round")
    parser.add_argument("--workers", type=int, default=2, help="schemathesis workers")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args()
    started = time.perf_counter()
    result, tracebacks = fuzz(args.requests, args.examples, args.seed, args.workers)
    elapsed = time.perf_counter() - started
    contract = result.contract_findings()
    summary = {
        "requests": result.requests,
        "rounds": result.rounds,
        "seconds": round(elapsed, 1),
        "responses_5xx": result.responses_5xx,
        "service_tracebacks": len(tracebacks),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "operations": dict(sorted(result.operations.items())),
        "check_runs": dict(sorted(result.check_runs.items())),
        "check_failures": dict(sorted(result.check_failures.items())),
        "contract_failures": len(contract),
    }
    if args.json:
        print(json.dumps({"summary": summary}))
        for finding in result.findings.values():
            print(json.dumps({"finding": finding.__dict__}))
        for traceback in tracebacks:
            print(json.dumps({"traceback": traceback}))
    else:
        print(f"requests fuzzed: {result.requests} in {result.rounds} rounds, {elapsed:.0f} s")
        print(f"5xx responses: {result.responses_5xx}; service tracebacks: {len(tracebacks)}")
        print("statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items())))
        print("\nrequests per route:")
        for operation, count in sorted(result.operations.items()):
            print(f"  {operation:<42} {count:>6}")
        print(f"\n{'check':<32} {'runs':>7} {'failed':>7}  kind")
        for check, runs in sorted(result.check_runs.items()):
            kind = "contract" if check in CONTRACT_CHECKS else "advisory"
            print(f"{check:<32} {runs:>7} {result.check_failures[check]:>7}  {kind}")
        print("\ndistinct failures:")
        for finding in result.findings.values():
            first = finding.message.splitlines()[0] if finding.message else ""
            print(f"  [{finding.check}] {finding.operation}: {finding.title} ({first})")
            print(f"      {finding.request[:300]}")
        for traceback in tracebacks:
            print("\nservice traceback:\n" + traceback)
    return 1 if result.responses_5xx or tracebacks or contract else 0


if __name__ == "__main__":
    sys.exit(main())
