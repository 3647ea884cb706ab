"""What only Redis has: key layout, Lua/Python byte equality, outages, persistence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knapsack_service.store import (
    GroupOutcome,
    OutcomeUnknown,
    RedisStore,
    ReportToApply,
    StoreError,
    StoreUnavailable,
)
from knapsack_service.store.keys import RUNS_KEY, RunKeys
from knapsack_service.store.records import encode_record
from knapsack_service.summaries import allocation_increments
from tests.store.test_store_contract import SETTINGS, expected_records, random_reports
from tests.support.redis_server import RedisServer, find_free_port

T = TypeVar("T")
TIMEOUT = 0.3


def run(url: str, body: Callable[[RedisStore], Awaitable[T]], timeout: float = TIMEOUT) -> T:
    async def main() -> T:
        store = RedisStore.from_url(url, timeout=timeout)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def all_keys(url: str) -> set[bytes]:
    with redis.Redis.from_url(url) as client:
        return set(client.keys("*"))


def test_every_key_of_a_run_carries_its_hash_tag(redis_url: str) -> None:
    run_id = "weird {run}: *"
    report = ReportToApply("r", 3, 0.9, (GroupOutcome("p{1}:*", 1, 2),))

    async def body(store: RedisStore) -> None:
        await store.put_settings(run_id, SETTINGS)
        await store.apply_report(run_id, report)
        await store.record_allocation(
            run_id, 3, allocation_increments(np.array([2]), np.array([0.5]))
        )

    run(redis_url, body)
    prefix = RunKeys(run_id).prefix.encode()
    assert prefix == b"krl:{weird%20%7Brun%7D%3A%20%2A}:"
    keys = all_keys(redis_url) - {RUNS_KEY.encode()}
    assert keys == {prefix + s for s in (b"cfg", b"meta", b"p", b"steps", b"rids", b"acks", b"s:3")}
    with redis.Redis.from_url(redis_url) as client:
        # The record is the 60-byte layout, keyed by the raw prompt id.
        assert len(client.hget(prefix + b"p", b"p{1}:*")) == 60


def test_delete_removes_exactly_the_runs_keys(redis_url: str) -> None:
    # Under naive splicing these ids collide: 'a*' as a glob matches 'ab...', and
    # 'a}:p' would close the hash tag early and land in run 'a''s key space.
    runs = ["a", "a*", "ab", "a}:p", "a}", "{a}"]
    report = ReportToApply("r", 1, 1.0, (GroupOutcome("p", 1, 2),))

    async def fill(store: RedisStore) -> None:
        for run_id in runs:
            await store.put_settings(run_id, SETTINGS)
            await store.apply_report(run_id, report)
            await store.apply_report(run_id, ReportToApply("r2", 2, 1.0, report.groups))
            await store.record_allocation(
                run_id, 7, allocation_increments(np.array([2]), np.array([0.5]))
            )

    run(redis_url, fill)
    keys_per_run = {
        run_id: {k for k in all_keys(redis_url) if k.startswith(RunKeys(run_id).prefix.encode())}
        for run_id in runs
    }
    for run_id in runs:
        assert len(keys_per_run[run_id]) == 9  # cfg meta p steps rids acks s:1 s:2 s:7
    for victim in ("a*", "a", "a}:p"):
        before = all_keys(redis_url)

        async def delete(store: RedisStore, victim: str = victim) -> bool:
            return await store.delete_run(victim)

        assert run(redis_url, delete) is True
        after = all_keys(redis_url)
        assert before - after == keys_per_run[victim]
        assert after <= before
    with redis.Redis.from_url(redis_url) as client:
        assert {m.decode() for m in client.smembers(RUNS_KEY)} == {"ab", "a}", "{a}"}


def test_bad_arguments_never_half_apply(redis_url: str) -> None:
    keys = RunKeys("run")

    async def body(store: RedisStore) -> None:
        await store.put_settings("run", SETTINGS)
        script_keys = [*keys.fixed(), keys.summary(1)]
        good = ["p1", "1", "2", "", "0"]
        bad_groups = [
            ["p2", "3", "2", "", "0"],  # successes > trials
            ["p2", "1", "0", "", "0"],  # trials 0
            ["p2", "1.5", "2", "", "0"],  # not an integer
            ["p2", "nan", "2", "", "0"],
            ["p2", "1", "2", "-4", "0"],  # negative tokens
            ["p2", "1", "2", "inf", "0"],
            ["p2", "1", "2", "", "2"],  # zero-variance flag
            ["p2", "1", "2", ""],  # missing field
        ]
        for bad in bad_groups:
            with pytest.raises(Exception, match="KRL_BAD_ARGS"):
                await store._apply_script(
                    keys=script_keys, args=["rid", "1", "0.9", "100", "2", *good, *bad]
                )
        for head in (["rid", "-1", "0.9"], ["rid", "1", "0"], ["rid", "1", "1.5"], ["", "1", "1"]):
            with pytest.raises(Exception, match="KRL_BAD_ARGS"):
                await store._apply_script(keys=script_keys, args=[*head, "100", "1", *good])

    run(redis_url, body)
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists(keys.prompts, keys.meta, keys.report_ids, keys.steps)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 12))
def test_lua_records_are_byte_identical_to_python(redis_url: str, seed: int, count: int) -> None:
    prompts = ["a", "b", "c"]
    reports = random_reports(seed, prompts, count)
    run_id = f"run-{seed}-{count}"

    async def body(store: RedisStore) -> dict[bytes, bytes]:
        await store.put_settings(run_id, SETTINGS)
        for report in reports:
            await store.apply_report(run_id, report)
        return await store.client.hgetall(RunKeys(run_id).prompts)

    stored = run(redis_url, body)
    expected = {pid.encode(): encode_record(rec) for pid, rec in expected_records(reports).items()}
    assert stored == expected


def test_killed_redis_raises_unavailable_then_recovers() -> None:
    with RedisServer() as server:

        async def body(store: RedisStore) -> None:
            await store.put_settings("run", SETTINGS)
            await store.apply_report("run", ReportToApply("a", 1, 1.0, (GroupOutcome("p", 1, 2),)))
            server.kill()
            report = ReportToApply("b", 2, 1.0, (GroupOutcome("p", 1, 2),))
            for call in (
                store.ping(),
                store.read_batch("run", ["p"]),
                store.apply_report("run", report),
                store.get_settings("run"),
                store.read_counters("run"),
            ):
                # Bounded by the socket timeouts: a hang would end in TimeoutError here.
                with pytest.raises(StoreUnavailable):
                    await asyncio.wait_for(call, timeout=20 * TIMEOUT)
            server.start()  # empty: no persistence on this server
            await store.ping()  # the same store reconnects by itself
            assert await store.put_settings("run", SETTINGS) is True
            assert (await store.apply_report("run", report)).accepted == 1

        run(server.url, body)


def test_paused_redis_times_out_then_recovers() -> None:
    with RedisServer() as server:

        async def body(store: RedisStore) -> None:
            await store.put_settings("run", SETTINGS)
            server.pause()
            try:
                with pytest.raises(StoreUnavailable):
                    await asyncio.wait_for(store.read_batch("run", ["p"]), timeout=20 * TIMEOUT)
            finally:
                server.resume()
            settings_json, _ = await store.read_batch("run", ["p"])
            assert settings_json == SETTINGS

        run(server.url, body)


def test_append_only_always_keeps_every_applied_report() -> None:
    prompts = [f"p{i}" for i in range(10)]
    reports = random_reports(seed=3, prompts=prompts, count=30)
    with RedisServer(appendonly=True, appendfsync="always") as server:

        async def write(store: RedisStore) -> None:
            await store.put_settings("run", SETTINGS)
            for report in reports:
                await store.apply_report("run", report)

        run(server.url, write)
        server.kill()  # a crash: only what was fsynced survives
        server.start()

        async def read(store: RedisStore) -> tuple:
            counters = await store.read_counters("run")
            stored = await store.client.hgetall(RunKeys("run").prompts)
            again = await store.apply_report("run", reports[-1])
            return counters, stored, again

        counters, stored, again = run(server.url, read)
    assert counters["reports"] == len(reports)
    assert counters["rollouts"] == sum(g.trials for r in reports for g in r.groups)
    expected = {pid.encode(): encode_record(rec) for pid, rec in expected_records(reports).items()}
    assert stored == expected
    assert again.duplicate  # report ids survived too


def test_translate_errors() -> None:
    from redis import exceptions as rex

    from knapsack_service.store.redis_store import translate_redis_error

    assert isinstance(translate_redis_error(rex.ConnectionError("x")), StoreUnavailable)
    assert isinstance(translate_redis_error(rex.TimeoutError("x")), StoreUnavailable)
    assert isinstance(translate_redis_error(rex.BusyLoadingError("x")), StoreUnavailable)
    assert isinstance(translate_redis_error(rex.ClusterDownError("x")), StoreUnavailable)
    assert isinstance(
        translate_redis_error(rex.ResponseError("BUSY Redis is busy")), StoreUnavailable
    )
    plain = translate_redis_error(rex.ResponseError("WRONGTYPE x"))
    assert type(plain) is StoreError


def test_client_that_decodes_responses_is_refused(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisStore(client)


def test_a_report_whose_answer_times_out_is_an_unknown_outcome_then_a_duplicate(
    redis_url: str,
) -> None:
    # Redis finishes a script the client stopped waiting for: the store must not say
    # "unavailable, nothing changed", and the retry must learn what was applied.
    groups = tuple(GroupOutcome(f"p{i}", i % 3, 4) for i in range(16384))
    report = ReportToApply("long", 1, 1.0, groups)

    async def create(store: RedisStore) -> None:
        await store.put_settings("run", SETTINGS)
        # Loads the script, so the impatient call below needs no SCRIPT LOAD.
        await store.apply_report("run", ReportToApply("warm", 0, 1.0, groups[:1]))

    async def impatient(store: RedisStore) -> None:
        for _ in range(50):  # connect once (a busy machine may miss 2 ms now and then)
            try:
                await store.ping()
                break
            except StoreUnavailable:
                continue
        # The pool's connection exists: only the reply to the script can time out.
        with pytest.raises(OutcomeUnknown):
            await store.apply_report("run", report)

    async def retry(store: RedisStore) -> None:
        again = await store.apply_report("run", report)
        assert (again.accepted, again.duplicate) == (len(groups), True)
        assert (await store.read_counters("run"))["reports"] == 2

    run(redis_url, create)
    run(redis_url, impatient, timeout=0.002)
    run(redis_url, retry)


def test_a_refused_connection_is_unavailable_with_nothing_changed() -> None:
    async def body(store: RedisStore) -> None:
        with pytest.raises(StoreUnavailable) as refused:
            await store.apply_report("run", ReportToApply("r", 1, 1.0, (GroupOutcome("p", 1, 2),)))
        assert not isinstance(refused.value, OutcomeUnknown)

    run(f"redis://127.0.0.1:{find_free_port()}/0", body)


def test_memory_usage_reports_used_memory_and_maxmemory() -> None:
    with RedisServer(extra_args=("--maxmemory", "64mb")) as server:

        async def body(store: RedisStore) -> None:
            usage = await store.memory_usage()
            assert usage.max_bytes == 64 * 2**20
            assert 0 < usage.used_bytes < usage.max_bytes

        run(server.url, body)
