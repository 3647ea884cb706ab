"""End to end: two `knapsack-service serve` processes share one real Redis Cluster.

Three masters on loopback; each service gets a plain `redis://` seed URL (a different
master each) and `KRL_REDIS_CLUSTER=true`. Four reporter threads alternate between the
two services over three runs whose slots live on three different masters, and retry
every report once on the other service with the same report id. Both services must
then agree, through lookup and the run counters, on totals that count every report
exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from knapsack_service.store.keys import RunKeys
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.service_process import ServiceProcess

# Two service processes take 8-20 s to import and warm their kernels on a shared
# 2-core machine, so this is a slow test (run with `-m slow`).
pytestmark = pytest.mark.slow

THREADS = 4
REPORTS_PER_THREAD = 12
PROMPTS = [f"prompt-{i}" for i in range(10)]


@pytest.fixture(scope="module")
def service_urls(redis_cluster: LocalRedisCluster) -> Iterator[list[str]]:
    """Two services, each seeded with a different master of the cluster."""
    redis_cluster.flush()
    services = [
        ServiceProcess(
            {
                "KRL_REDIS_URL": f"redis://127.0.0.1:{seed_port}/0",
                "KRL_REDIS_CLUSTER": "true",
                "KRL_LOG_LEVEL": "warning",
            }
        )
        for seed_port in redis_cluster.ports[:2]
    ]
    try:
        for service in services:  # both import and warm up at the same time
            service.launch()
        yield [service.wait_ready().url for service in services]
    finally:
        for service in services:
            service.close()


def runs_on_distinct_masters(cluster: LocalRedisCluster) -> list[str]:
    by_master: dict[int, str] = {}
    for n in range(1000):
        run_id = f"cluster:{{run}}-{n}"  # braces and ':' are escaped inside the hash tag
        by_master.setdefault(cluster.master_port_for_key(RunKeys(run_id).settings), run_id)
        if len(by_master) == len(cluster.ports):
            return list(by_master.values())
    raise AssertionError("no run ids found on every master")


def report_body(thread: int, index: int) -> dict:
    """A deterministic report: prompts and counts depend on (thread, index) only."""
    results = []
    for k in range(3):
        prompt = PROMPTS[(thread * 7 + index * 3 + k) % len(PROMPTS)]
        trials = 2 + (thread + index + k) % 7
        results.append({"prompt_id": prompt, "successes": (index + k) % (trials + 1),
                        "trials": trials})  # fmt: skip
    return {"report_id": f"t{thread}-r{index}", "step": index, "results": results}


def reporter(thread: int, urls: list[str], runs: list[str], errors: list[BaseException]) -> None:
    """Send each report to one service, then retry it (same id) on the other."""
    try:
        with httpx.Client(timeout=10.0) as client:
            for index in range(REPORTS_PER_THREAD):
                run_id = runs[(thread + index) % len(runs)]
                path = f"/v1/runs/{run_id}/outcomes"
                first, retry = urls[index % 2], urls[(index + 1) % 2]
                body = report_body(thread, index)
                answer = client.post(first + path, json=body)
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"accepted": 3, "duplicate": False}
                again = client.post(retry + path, json=body)
                assert again.status_code == 200, again.text
                # A duplicate answers with the original acknowledgement (issue 12, item 6).
                assert again.json() == {"accepted": 3, "duplicate": True}
    except BaseException as error:  # surfaced by the test thread
        errors.append(error)


def test_two_services_share_exact_totals(
    redis_cluster: LocalRedisCluster,
    service_urls: list[str],
) -> None:
    runs = runs_on_distinct_masters(redis_cluster)
    masters = {redis_cluster.master_port_for_key(RunKeys(r).settings) for r in runs}
    assert masters == set(redis_cluster.ports)
    with httpx.Client(timeout=10.0) as client:
        for n, run_id in enumerate(runs):
            created = client.put(service_urls[n % 2] + f"/v1/runs/{run_id}", json={})
            assert created.status_code in (200, 201), created.text

    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=reporter, args=(t, service_urls, runs, errors))
        for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

    expected: dict[str, tuple[Counter, Counter]] = {r: (Counter(), Counter()) for r in runs}
    reports_per_run: Counter = Counter()
    for t in range(THREADS):
        for index in range(REPORTS_PER_THREAD):
            run_id = runs[(t + index) % len(runs)]
            reports_per_run[run_id] += 1
            successes, trials = expected[run_id]
            for result in report_body(t, index)["results"]:
                successes[result["prompt_id"]] += result["successes"]
                trials[result["prompt_id"]] += result["trials"]

    with httpx.Client(timeout=10.0) as client:
        for url in service_urls:  # both services read the same cluster
            for run_id in runs:
                successes, trials = expected[run_id]
                lookup = client.post(
                    f"{url}/v1/runs/{run_id}/prompts/lookup", json={"prompt_ids": PROMPTS}
                )
                assert lookup.status_code == 200, lookup.text
                got = {
                    p["prompt_id"]: (p["successes"], p["trials"]) for p in lookup.json()["prompts"]
                }
                assert got == {p: (successes[p], trials[p]) for p in PROMPTS}, run_id
                info = client.get(url + f"/v1/runs/{run_id}")
                assert info.status_code == 200, info.text
                counters = info.json()["counters"]
                assert counters["reports"] == reports_per_run[run_id]
                assert counters["duplicate_reports"] == reports_per_run[run_id]
                assert counters["rollouts"] == sum(trials.values())
                assert counters["successes"] == sum(successes.values())
    # Every key of each run sits on the master owning the run's slot, nowhere else.
    keys_by_port = redis_cluster.keys_by_port()
    for run_id in runs:
        prefix = RunKeys(run_id).prefix.encode()
        holders = {
            port for port, keys in keys_by_port.items() if any(k.startswith(prefix) for k in keys)
        }
        assert holders == {redis_cluster.master_port_for_key(RunKeys(run_id).settings)}
