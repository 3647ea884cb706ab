"""`Store.claim_plan` on the memory store, a real redis-server and a real Redis Cluster.

The first plan kept under a key wins; every later claim gets it back byte for byte,
also when many claims race; plans go with the run and expire with its retention.
"""

from __future__ import annotations

import asyncio

import pytest

from knapsack_service.store import MemoryStore, RedisStore, RunNotFound, Store, create_store
from knapsack_service.store.keys import RunKeys
from knapsack_service.store.redis_client import build_client
from tests.store.conftest import StoreRunner, store_runner

SETTINGS = "{}"


@pytest.fixture(params=["memory", "redis", "cluster"])
def run_on_store(request: pytest.FixtureRequest) -> StoreRunner:
    """`run(body)` on a fresh store of each kind (the cluster one on a 3-master cluster)."""
    if request.param == "memory":
        return store_runner(MemoryStore)
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    return store_runner(lambda: create_store(url))


def test_first_plan_wins_and_is_served_back_byte_for_byte(run_on_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        await store.put_settings("r", SETTINGS)
        first = await store.claim_plan("r", "5:abc", b"\x00plan-one\xff")
        again = await store.claim_plan("r", "5:abc", b"plan-two")
        other = await store.claim_plan("r", "6:abc", b"plan-six")
        assert (first.created, first.plan) == (True, b"\x00plan-one\xff")
        assert (again.created, again.plan) == (False, b"\x00plan-one\xff")
        assert (other.created, other.plan) == (True, b"plan-six")

    run_on_store(body)


def test_racing_claims_all_get_one_plan(run_on_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        await store.put_settings("r", SETTINGS)
        claims = await asyncio.gather(
            *(store.claim_plan("r", "7:k", f"rank-{rank}".encode()) for rank in range(16))
        )
        assert sum(claim.created for claim in claims) == 1
        assert len({claim.plan for claim in claims}) == 1

    run_on_store(body)


def test_missing_run_is_refused_and_delete_takes_the_plans(run_on_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        with pytest.raises(RunNotFound):
            await store.claim_plan("r", "0:k", b"x")
        await store.put_settings("r", SETTINGS)
        await store.claim_plan("r", "0:k", b"old")
        assert await store.delete_run("r")
        await store.put_settings("r", SETTINGS)
        fresh = await store.claim_plan("r", "0:k", b"new")
        assert (fresh.created, fresh.plan) == (True, b"new")

    run_on_store(body)


def test_runs_keep_their_own_plans(run_on_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        for run_id in ("a", "a}", "{a}"):
            await store.put_settings(run_id, SETTINGS)
            claim = await store.claim_plan(run_id, "1:k", run_id.encode())
            assert claim.created and claim.plan == run_id.encode()

    run_on_store(body)


def test_memory_plans_expire_with_the_retention() -> None:
    async def body(store: Store) -> None:
        assert isinstance(store, MemoryStore)
        await store.put_settings("r", SETTINGS)
        await store.claim_plan("r", "1:k", b"old")
        run = store._runs["r"]
        run.plans["1:k"] = (run.plans["1:k"][0] - 3601.0, run.plans["1:k"][1])  # an hour ago
        fresh = await store.claim_plan("r", "1:k", b"new")
        assert (fresh.created, fresh.plan) == (True, b"new")

    store_runner(lambda: MemoryStore(report_id_retention_seconds=3600))(body)


def test_redis_plans_expire_with_the_retention(redis_url: str) -> None:
    keys = RunKeys("r")

    async def body(store: Store) -> None:
        assert isinstance(store, RedisStore)
        await store.put_settings("r", SETTINGS)
        await store.claim_plan("r", "1:k", b"old")
        await store.client.zadd(keys.plan_times, {"1:k": 1})  # kept in 1970
        fresh = await store.claim_plan("r", "2:k", b"two")
        assert fresh.created
        assert await store.client.hget(keys.plans, "1:k") is None
        assert await store.client.zscore(keys.plan_times, "1:k") is None
        again = await store.claim_plan("r", "1:k", b"new")
        assert (again.created, again.plan) == (True, b"new")

    store_runner(lambda: RedisStore(build_client(redis_url), report_id_retention_seconds=3600))(
        body
    )


def test_plan_keys_carry_the_run_hash_tag() -> None:
    keys = RunKeys("my run")
    assert keys.plans.startswith(keys.prefix) and keys.plan_times.startswith(keys.prefix)
    assert keys.plans != keys.plan_times
