"""Solver benchmark: the exact fast solver against the paper's reference DP.

    python bench/solver.py            # tables
    python bench/solver.py --json     # one JSON line per case
    python bench/solver.py --quick    # skip the slowest reference DP (1024 / 8192)
    python bench/solver.py --paper-ab # only the paper batch: one-call path vs general path
    python bench/solver.py --parity   # only fallback=True against the paper code's rule

Both solvers run in this process on the same inputs (numba kernels, compiled first;
the compile / cache-load time is reported on its own line). Small cases report the
median of many runs, large ones the median of a few.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from knapsack_service.engine import (
    allocate,
    objective,
    solve_cost_aware,
    solve_unit_cost,
    warm_up,
)
from knapsack_service.engine.limits import Limits
from knapsack_service.engine.reference import (
    OfficialFailure,
    official_knapsack,
    solve_reference_cost_dp,
    solve_reference_dp,
)
from knapsack_service.engine.strategies import knapsack

MIN_N, MAX_N = 2, 128
UNIT_CASES = [(256, 2048), (1024, 8192), (100_000, 800_000), (1_000_000, 8_000_000)]
DP_LIMIT = 1024 * 8192  # prompts * budget beyond which the DP's O(M B) table is out of reach
COST_SIZES = [4, 8, 16, 32, 64]


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _rates(rng: np.random.Generator, m: int, kind: str) -> np.ndarray:
    true_p = rng.random(m)
    if kind == "grid":  # estimates from 16 rollouts: multiples of 1/16, 0 and 1 included
        return rng.binomial(16, true_p) / 16.0
    return true_p


def unit_cost_cases(quick: bool) -> list[dict]:
    rows = []
    rng = np.random.default_rng(2509)
    for m, budget in UNIT_CASES:
        for kind in ("grid", "continuous"):
            p = _rates(rng, m, kind)
            runs = 200 if m <= 1024 else (5 if m <= 100_000 else 3)
            fast = solve_unit_cost(budget, MIN_N, MAX_N, p=p)
            fast_seconds = _median_seconds(
                lambda b=budget, p=p: solve_unit_cost(b, MIN_N, MAX_N, p=p), runs
            )
            allocate_seconds = _median_seconds(
                lambda b=budget, p=p: allocate("knapsack", p, b, min_n=MIN_N, max_n=MAX_N), runs
            )
            reference_seconds = reference_value = None
            if m * budget <= DP_LIMIT and not (quick and m > 256):
                started = time.perf_counter()
                reference = solve_reference_dp(budget, MIN_N, MAX_N, p=p)
                reference_seconds = time.perf_counter() - started
                reference_value = objective(reference, p=p)
            fast_value = objective(fast, p=p)
            rows.append(
                {
                    "case": f"{m}/{budget} {kind}",
                    "prompts": m,
                    "budget": budget,
                    "max_n": MAX_N,
                    "rates": kind,
                    "fast_seconds": fast_seconds,
                    "allocate_seconds": allocate_seconds,
                    "reference_seconds": reference_seconds,
                    "fast_value": fast_value,
                    "reference_value": reference_value,
                    "value_difference": None
                    if reference_value is None
                    else fast_value - reference_value,
                    "speedup": None
                    if reference_seconds is None
                    else reference_seconds / fast_seconds,
                }
            )
    return rows


def paper_batch_ab(calls: int = 3000) -> list[dict]:
    """The paper's batch through `allocate("knapsack", ...)`: one-call path vs general path.

    256 prompts, budget 2048, N in [2, 128], rates on the 1/16 grid (0 and 1 included),
    about 10% unseen, fallback off and on. The general path is the knapsack
    strategy's plan followed by `solve_unit_cost` (`knapsack.allocate_rates`, the
    objective computed apart), the path batches too large for one call take; calls
    alternate between the two (medians), so load on the shared machine hits both
    alike. Answers must agree.
    """
    rng = np.random.default_rng(2509)
    rates = rng.binomial(16, rng.random(256)) / 16.0
    rates[rng.random(256) < 0.1] = np.nan
    limits = Limits.check(MIN_N, MAX_N)
    rows = []
    for fallback in (False, True):
        calls_by_path = {
            "one_call": lambda f=fallback: allocate(
                "knapsack", rates, 2048, min_n=MIN_N, max_n=MAX_N, fallback=f
            ),
            "general": lambda f=fallback: knapsack.allocate_rates(rates, 2048, limits, f, "heap"),
        }
        times: dict[str, list[float]] = {"general": [], "one_call": []}
        answers = {}
        for index in range(calls):
            for path in ("general", "one_call") if index % 2 else ("one_call", "general"):
                started = time.perf_counter()
                answers[path] = calls_by_path[path]()
                times[path].append(time.perf_counter() - started)
        general_value = objective(answers["general"], p=rates)
        same = (
            answers["general"].tobytes() == answers["one_call"].n.tobytes()
            and general_value == answers["one_call"].value
        )
        rows.append(
            {
                "case": f"paper batch 256/2048 fallback={fallback}",
                "general_seconds": statistics.median(times["general"]),
                "one_call_seconds": statistics.median(times["one_call"]),
                "identical": same,
                "calls": calls,
                "load_average": list(os.getloadavg()),
            }
        )
    return rows


def cost_cases() -> list[dict]:
    rows = []
    rng = np.random.default_rng(7)
    for m in COST_SIZES:
        gaps = []
        fast_times = []
        dp_times = []
        for _ in range(30 if m <= 16 else 8):
            p = rng.random(m)
            costs = rng.integers(1, 6, m)
            budget = int(costs.sum() * rng.integers(3, 12))
            started = time.perf_counter()
            n = solve_cost_aware(float(budget), costs.astype(float), MIN_N, 16, p=p)
            fast_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            best = solve_reference_cost_dp(budget, costs, MIN_N, 16, p=p)
            dp_times.append(time.perf_counter() - started)
            optimum = objective(best, p=p)
            gaps.append((optimum - objective(n, p=p)) / optimum if optimum > 0 else 0.0)
        rows.append(
            {
                "case": f"cost-aware M={m}",
                "prompts": m,
                "instances": len(gaps),
                "worst_gap": max(gaps),
                "mean_gap": float(np.mean(gaps)),
                "fast_seconds": statistics.median(fast_times),
                "reference_seconds": statistics.median(dp_times),
            }
        )
    return rows


PARITY_CASES = [(64, 1000), (256, 40)]  # (prompts, batches), budget 8 per prompt


def parity_cases() -> list[dict]:
    """`knapsack` with fallback=True against `reference.official_knapsack`.

    Batches of 16-outcome estimates (true p ~ Beta(0.6, 0.6), about 10% unseen),
    N in [2, 128], default_n 8, positive_n = negative_n = 2, budget 8 per prompt.
    The ratio is our objective over the paper code's answer (its DP scores a prompt
    left at min_n as 0); "exact" counts batches where ours equals the paper's rule
    scored with the true objective. Batches where the paper's code exceeds max_n
    (surplus to few p = 0 prompts, uncapped) are counted apart: ours is capped there.
    """
    rows = []
    rng = np.random.default_rng(11)
    limits = {"min_n": MIN_N, "max_n": MAX_N, "default_n": 8, "positive_n": 2, "negative_n": 2}
    for m, batches in PARITY_CASES:
        ratios, exact, unsafe, failed = [], 0, 0, 0
        for _ in range(batches):
            rates = rng.binomial(16, rng.beta(0.6, 0.6, m)) / 16.0
            rates[rng.random(m) < 0.1] = np.nan
            budget = 8 * m
            ours = allocate("knapsack", rates, budget, fallback=True, **limits)
            try:
                paper = official_knapsack(rates, budget, **limits)
                paper_true = official_knapsack(rates, budget, scoring="true", **limits)
            except OfficialFailure:
                failed += 1
                continue
            if paper.max() > MAX_N:
                unsafe += 1
                continue
            paper_value = objective(paper, p=rates)
            exact += abs(ours.value - objective(paper_true, p=rates)) <= 1e-12 * ours.value
            if paper_value > 0:
                ratios.append(ours.value / paper_value)
        rows.append(
            {
                "case": f"parity M={m} budget={8 * m}",
                "batches": batches,
                "compared": len(ratios),
                "exact": exact,
                "unsafe": unsafe,
                "failed": failed,
                "mean_ratio": float(np.mean(ratios)),
                "min_ratio": float(np.min(ratios)),
                "max_ratio": float(np.max(ratios)),
            }
        )
    return rows


def _print_parity(rows: list[dict]) -> None:
    print(
        "| fallback parity | batches | compared | equal to the rule (true scoring) "
        "| paper code > max_n | paper code fails | ours / paper: mean | min | max |"
    )
    print("|" + "---|" * 9)
    for r in rows:
        print(
            f"| {r['case']} | {r['batches']} | {r['compared']} | {r['exact']} | {r['unsafe']} "
            f"| {r['failed']} | {r['mean_ratio']:.5f} | {r['min_ratio']:.5f} "
            f"| {r['max_ratio']:.5f} |"
        )


def _fmt(x: float | None, unit: float = 1e3, digits: int = 3) -> str:
    return "-" if x is None else f"{x * unit:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    parser.add_argument("--quick", action="store_true", help="skip the 1024/8192 reference DP")
    parser.add_argument("--paper-ab", action="store_true", help="only the paper batch A/B")
    parser.add_argument("--parity", action="store_true", help="only the fallback parity")
    args = parser.parse_args()

    compile_seconds = warm_up()
    warm_seconds = warm_up()
    if args.paper_ab:
        for row in paper_batch_ab():
            if args.json:
                print(json.dumps(row))
            else:
                print(
                    f"{row['case']}: general path {_fmt(row['general_seconds'])} ms, "
                    f"one call {_fmt(row['one_call_seconds'])} ms, identical={row['identical']}, "
                    f"load {row['load_average']}"
                )
        return
    if args.parity:
        parity = parity_cases()
        if args.json:
            for row in parity:
                print(json.dumps(row))
        else:
            _print_parity(parity)
        return
    units = unit_cost_cases(args.quick)
    costs = cost_cases()
    parity = parity_cases()
    if args.json:
        print(
            json.dumps(
                {
                    "case": "warm_up",
                    "first_seconds": compile_seconds,
                    "second_seconds": warm_seconds,
                }
            )
        )
        for row in units + costs + parity:
            print(json.dumps(row))
        return
    print(
        f"warm_up: first call {compile_seconds:.3f} s (compile or cache load), "
        f"then {warm_seconds * 1e3:.2f} ms"
    )
    print()
    header = (
        "| case | fast solve (ms) | allocate() (ms) | reference DP (ms) | speedup "
        "| fast value | DP value | difference |"
    )
    print(header)
    print("|" + "---|" * 8)
    for r in units:
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:.0f}x"
        ref_value = "-" if r["reference_value"] is None else f"{r['reference_value']:.12f}"
        diff = "-" if r["value_difference"] is None else f"{r['value_difference']:.1e}"
        print(
            f"| {r['case']} | {_fmt(r['fast_seconds'])} | {_fmt(r['allocate_seconds'])} "
            f"| {_fmt(r['reference_seconds'], digits=1)} | {speedup} "
            f"| {r['fast_value']:.12f} | {ref_value} | {diff} |"
        )
    print()
    print(
        "| cost-aware case | instances | worst gap | mean gap | greedy+swaps (ms) | exact DP (ms) |"
    )
    print("|" + "---|" * 6)
    for r in costs:
        print(
            f"| M={r['prompts']} | {r['instances']} | {r['worst_gap'] * 100:.3f}% "
            f"| {r['mean_gap'] * 100:.3f}% | {_fmt(r['fast_seconds'])} "
            f"| {_fmt(r['reference_seconds'], digits=1)} |"
        )

    print()
    _print_parity(parity)


if __name__ == "__main__":
    main()
