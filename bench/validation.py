"""Request validation cost of the wire models (`knapsack_client._models`), side by side.

The service validates every body with the client's models, so their cost is part of
report ingestion and of `/v1/solve`. Cases: a report of 256 results (as the ingestion
benchmark sends), the same from JSON bytes, and a solve request of 1024 success rates.

    python bench/validation.py                                   # the working tree
    python bench/validation.py --baseline-src /tmp/old/client/src

With `--baseline-src` (for example `git archive <commit> client/src | tar -x -C
/tmp/old`), each round runs the old and the new models in fresh processes, alternating
which goes first, and the table gives, in microseconds, the best and the median over
rounds of each process's best of five repetitions, and the ratio old / new of the
bests (on a loaded machine the best is the least disturbed figure).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure() -> dict[str, float]:
    """Best-of-five microseconds per validation of each case (run in a child process)."""
    from knapsack_client import OutcomeReport, SolveRequest

    report = {
        "report_id": "r",
        "step": 3,
        "worker": "0",
        "results": [
            {"prompt_id": f"p-{i:06d}", "successes": i % 9, "trials": 8} for i in range(256)
        ],
    }
    raw = json.dumps(report)
    solve = {"success_rates": [i / 1024 for i in range(1024)], "budget": 8192}
    cases = {
        "report_256_python": (lambda: OutcomeReport.model_validate(report), 200),
        "report_256_json": (lambda: OutcomeReport.model_validate_json(raw), 200),
        "solve_1024_rates": (lambda: SolveRequest.model_validate(solve), 200),
    }
    figures = {}
    for name, (call, repeat) in cases.items():
        call()
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(repeat):
                call()
            best = min(best, (time.perf_counter() - started) / repeat)
        figures[name] = best * 1e6
    return figures


def run_child(source: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    output = subprocess.run(
        [sys.executable, __file__, "--child"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-src", help="client sources to compare against")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure()))
        return
    labels = ["new"] + (["old"] if args.baseline_src else [])
    sources = {"new": None, "old": args.baseline_src}
    rounds: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    for index in range(args.rounds):
        for label in labels if index % 2 == 0 else labels[::-1]:
            rounds[label].append(run_child(sources[label]))
    cases = list(rounds["new"][0])
    header = " ".join(f"{label + ' best':>10} {label + ' median':>11}" for label in labels)
    print(f"{'case':20} {header}  old/new")
    for case in cases:
        best = {label: min(r[case] for r in rounds[label]) for label in labels}
        median = {label: statistics.median(r[case] for r in rounds[label]) for label in labels}
        row = " ".join(f"{best[label]:10.1f} {median[label]:11.1f}" for label in labels)
        ratio = f"{best['old'] / best['new']:6.2f}x" if "old" in best else ""
        print(f"{case:20} {row}  {ratio}")
    print(f"rounds {args.rounds}, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
