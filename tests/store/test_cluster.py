"""The store on a real 3-master Redis Cluster.

The whole `Store` contract (`test_store_contract.py`) runs again here on a
cluster-backed store: its tests are imported, not copied, and `run_with_store` is
overridden to build the store on the cluster. A multi-key command that mixed slots
would fail them with a cross-slot `StoreError`. The tests below add what only a
cluster has: where keys land, URL parsing, and the mapping of cluster errors.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import numpy as np
import pytest
from redis import exceptions as rex

from knapsack_service.store import (
    GroupOutcome,
    RedisStore,
    ReportToApply,
    StoreError,
    StoreUnavailable,
    create_store,
)
from knapsack_service.store.cluster import is_cluster_url, parse_cluster_url
from knapsack_service.store.keys import RUNS_KEY, RunKeys
from knapsack_service.store.redis_store import translate_redis_error
from knapsack_service.summaries import allocation_increments
from tests.store import test_store_contract as contract
from tests.store.conftest import StoreRunner, store_runner
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.redis_server import find_free_port

T = TypeVar("T")

# Every contract test, collected again in this module where `run_with_store` (below)
# builds a cluster-backed store. New contract tests are picked up automatically.
globals().update({name: test for name, test in vars(contract).items() if name.startswith("test_")})


@pytest.fixture
def run_with_store(redis_cluster_url: str) -> StoreRunner:
    """Run `body(store)` in a fresh event loop on a store on the (emptied) cluster."""

    def make_store() -> RedisStore:
        store = create_store(redis_cluster_url)
        assert isinstance(store, RedisStore)
        return store

    return store_runner(make_store)


def runs_on_distinct_masters(cluster: LocalRedisCluster, count: int) -> list[str]:
    """`count` run ids whose slots belong to `count` different masters."""
    chosen: dict[int, str] = {}
    for n in range(1000):
        run_id = f"run-{n}"
        chosen.setdefault(cluster.master_port_for_key(RunKeys(run_id).settings), run_id)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError("no run ids found on every master")


def test_each_run_lives_on_one_master_and_runs_spread(
    redis_cluster: LocalRedisCluster,
    redis_cluster_url: str,
) -> None:
    run_ids = [*runs_on_distinct_masters(redis_cluster, 3), "", "{tag}", "a:b}{", "%41"]

    async def body() -> None:
        store = create_store(redis_cluster_url)
        try:
            for step, run_id in enumerate(run_ids):
                await store.put_settings(run_id, "{}")
                report = ReportToApply(f"r{step}", step, 0.9, (GroupOutcome("p", 1, 2),))
                assert not (await store.apply_report(run_id, report)).duplicate
                await store.record_allocation(
                    run_id, step, allocation_increments(np.array([2]), np.array([0.5]))
                )
                assert (await store.read_counters(run_id))["reports"] == 1
                assert [step for step, _ in await store.read_summary(run_id)] == [step]
            assert await store.list_runs() == sorted(run_ids)
        finally:
            await store.close()

    asyncio.run(body())
    masters_of_runs = set()
    for run_id in run_ids:
        prefix = RunKeys(run_id).prefix.encode()
        holders = {
            port
            for port, keys in redis_cluster.keys_by_port().items()
            if any(key.startswith(prefix) for key in keys)
        }
        assert len(holders) == 1, (run_id, holders)  # every key of the run: one master
        masters_of_runs |= holders
    assert masters_of_runs == set(redis_cluster.ports)  # and the runs use all three


def test_plain_seed_url_with_cluster_flag(redis_cluster: LocalRedisCluster) -> None:
    redis_cluster.flush()

    async def body() -> list[str]:
        store = create_store(redis_cluster.seed_url, cluster=True)
        try:
            for run_id in runs_on_distinct_masters(redis_cluster, 3):
                await store.put_settings(run_id, "{}")
            return await store.list_runs()
        finally:
            await store.close()

    assert len(asyncio.run(body())) == 3


def test_cross_slot_commands_are_errors_not_outages(
    redis_cluster: LocalRedisCluster,
    redis_cluster_url: str,
) -> None:
    """A command mixing `krl:runs` with a run key is a bug: it must not look like an outage."""

    async def body() -> None:
        store = create_store(redis_cluster_url)
        assert isinstance(store, RedisStore)
        settings_key = RunKeys(runs_on_distinct_masters(redis_cluster, 3)[0]).settings
        try:
            with pytest.raises(rex.ResponseError) as server_side:  # CROSSSLOT from Redis
                await store.client.mget(RUNS_KEY, settings_key)
        finally:
            await store.close()
        # redis-py versions that check slots before sending raise this instead.
        client_side = rex.RedisClusterException("EVALSHA - all keys must map to the same key slot")
        for error in (server_side.value, client_side):
            translated = translate_redis_error(error)
            assert type(translated) is StoreError, (error, translated)
            assert "cross-slot" in str(translated)

    asyncio.run(body())


@pytest.mark.parametrize(
    "error",
    [
        rex.ClusterDownError("CLUSTERDOWN The cluster is down"),
        rex.MasterDownError("MASTERDOWN Link with MASTER is down"),
        rex.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        rex.SlotNotCoveredError("Slot 42 is not covered by the cluster."),
        rex.RedisClusterException("Redis Cluster cannot be connected."),
        rex.ConnectionError("Connection refused"),
        rex.TimeoutError("Timeout reading from socket"),
    ],
)
def test_cluster_errors_are_unavailable(error: Exception) -> None:
    assert isinstance(translate_redis_error(error, "run"), StoreUnavailable)


def test_unreachable_cluster_is_unavailable() -> None:
    async def body() -> None:
        store = create_store(f"redis+cluster://127.0.0.1:{find_free_port()}", timeout=0.2)
        try:
            with pytest.raises(StoreUnavailable):
                await store.ping()
            with pytest.raises(StoreUnavailable):
                await store.get_settings("run")
        finally:
            await store.close()

    asyncio.run(body())


def test_killed_master_makes_its_runs_unavailable() -> None:
    with LocalRedisCluster() as cluster:
        victim_run, *other_runs = runs_on_distinct_masters(cluster, 3)

        async def body() -> None:
            store = create_store(cluster.url, timeout=0.3)
            try:
                for run_id in (victim_run, *other_runs):
                    await store.put_settings(run_id, "{}")
                victim_port = cluster.master_port_for_key(RunKeys(victim_run).settings)
                next(node for node in cluster.nodes if node.port == victim_port).kill()
                with pytest.raises(StoreUnavailable):
                    await store.get_settings(victim_run)
                with pytest.raises(StoreUnavailable):
                    await store.apply_report(
                        victim_run, ReportToApply("r", 1, 1.0, (GroupOutcome("p", 1, 2),))
                    )
            finally:
                await store.close()

        asyncio.run(body())


@pytest.mark.parametrize(
    ("url", "plain", "seeds"),
    [
        ("redis+cluster://h1:7000", "redis://h1:7000", (("h1", 7000),)),
        (
            "redis+cluster://u:p%40ss@h1:7000,h2:7001,h3/0?health_check_interval=5",
            "redis://u:p%40ss@h1:7000/0?health_check_interval=5",
            (("h1", 7000), ("h2", 7001), ("h3", 6379)),
        ),
        (
            "rediss+cluster://h1:7000,[::1]:7001/",
            "rediss://h1:7000/",
            (("h1", 7000), ("::1", 7001)),
        ),
        ("redis://seed:6380/0", "redis://seed:6380/0", (("seed", 6380),)),
    ],
)
def test_parse_cluster_url(url: str, plain: str, seeds: tuple[tuple[str, int], ...]) -> None:
    parsed = parse_cluster_url(url)
    assert parsed.url == plain
    assert parsed.seeds == seeds


@pytest.mark.parametrize(
    "url", ["redis+cluster://h1:7000/1", "http://h1:7000", "redis+cluster://:7000", "h1:7000"]
)
def test_parse_cluster_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_cluster_url(url)


def test_cluster_scheme_detection() -> None:
    assert is_cluster_url("redis+cluster://h:1") and is_cluster_url("REDISS+CLUSTER://h:1")
    assert not is_cluster_url("redis://h:1") and not is_cluster_url("unix:///tmp/r.sock")
