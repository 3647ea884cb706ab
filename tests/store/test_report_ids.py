"""Report ids, content digests, the dedup window and refused reports, on both stores.

Each refusal must leave the run exactly as it was; each is a `ReportRefused` naming
the wire field the API reports back.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import pytest
import redis.asyncio as aioredis

from knapsack_service.store import (
    CounterOverflow,
    GroupOutcome,
    MemoryStore,
    PromptLimitReached,
    RedisStore,
    ReportConflict,
    ReportExpired,
    ReportToApply,
    Store,
)
from knapsack_service.store.keys import RunKeys
from knapsack_service.store.records import EMPTY_RECORD_BYTES
from tests.store.conftest import StoreRunner, store_runner

SETTINGS = '{"strategy": "knapsack", "min_n": 2}'


def report(report_id: str, step: int, *groups: tuple[str, int, int], **extra) -> ReportToApply:
    outcomes = tuple(GroupOutcome(p, s, t) for p, s, t in groups)
    return ReportToApply(report_id, step, 1.0, outcomes, **extra)


async def snapshot(store: Store, prompts: list[str]) -> tuple:
    _, batch = await store.read_batch("run", prompts)
    counters = await store.read_counters("run")
    counters.pop("duplicate_reports")
    return batch.trials.tolist(), batch.successes.tolist(), counters


@pytest.fixture
def short_window(store_kind: str, request: pytest.FixtureRequest) -> StoreRunner:
    """A store whose report ids are forgotten after one second."""
    if store_kind == "memory":
        return store_runner(lambda: MemoryStore(report_id_retention_seconds=1))
    url = request.getfixturevalue("redis_url")
    return store_runner(
        lambda: RedisStore(aioredis.Redis.from_url(url), report_id_retention_seconds=1)
    )


def test_same_id_with_other_content_is_a_conflict_naming_report_id(
    run_with_store: StoreRunner,
) -> None:
    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        await store.apply_report("run", report("rank-id", 1, ("p", 1, 2)))
        before = await snapshot(store, ["p", "q"])
        with pytest.raises(ReportConflict) as refused:
            await store.apply_report("run", report("rank-id", 1, ("q", 2, 2)))
        assert refused.value.field == "report_id"
        assert "rank-id" in str(refused.value)
        assert await snapshot(store, ["p", "q"]) == before
        # The original content is still a plain duplicate, with its acknowledgement.
        again = await store.apply_report("run", report("rank-id", 1, ("p", 1, 2)))
        assert (again.accepted, again.duplicate) == (1, True)

    run_with_store(body)


def test_a_report_replayed_after_the_dedup_window_cannot_count_twice(
    short_window: StoreRunner,
) -> None:
    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        old = report("old", 5, ("p", 1, 2))
        await store.apply_report("run", old)
        await asyncio.sleep(2.2)  # Redis TIME has one-second resolution
        # A later step after the window: applied, and it forgets "old", closing step 5.
        assert not (await store.apply_report("run", report("new", 7, ("p", 2, 2)))).duplicate
        before = await snapshot(store, ["p"])
        with pytest.raises(ReportExpired) as refused:
            await store.apply_report("run", old)  # a journal replayed too late
        assert refused.value.field == "step"
        assert refused.value.closed_through == 5
        with pytest.raises(ReportExpired):  # any new id at a closed step, too
            await store.apply_report("run", report("late", 4, ("p", 1, 1)))
        assert await snapshot(store, ["p"]) == before
        # Steps above the closed one still take reports, late ones included.
        assert not (await store.apply_report("run", report("six", 6, ("p", 0, 1)))).duplicate

    short_window(body)


def test_counter_overflow_is_refused_naming_the_group(
    run_with_store: StoreRunner, store_kind: str
) -> None:
    near_limit = bytearray(EMPTY_RECORD_BYTES)
    near_limit[6:12] = (2**48 - 2).to_bytes(6, "little")  # trials one below the limit
    near_limit[36:44] = (0).to_bytes(4, "little") * 2  # beta_step and last_step 0: seen

    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        await store.apply_report("run", report("seed", 0, ("p", 0, 1)))
        if isinstance(store, RedisStore):
            await store.client.hset(RunKeys("run").prompts, "p", bytes(near_limit))
        else:
            store._runs["run"].records["p"] = bytes(near_limit)
        before = await snapshot(store, ["p", "q"])
        with pytest.raises(CounterOverflow) as refused:
            await store.apply_report("run", report("r", 1, ("q", 1, 1), ("p", 1, 5)))
        assert refused.value.field == "results.1.trials"
        assert refused.value.prompt_id == "p"
        assert await snapshot(store, ["p", "q"]) == before

    run_with_store(body)


def test_a_run_cannot_grow_past_its_prompt_limit(run_with_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        limit = {"max_prompts": 3}
        await store.apply_report("run", report("a", 1, ("p1", 1, 2), ("p2", 1, 2), **limit))
        before = await snapshot(store, ["p1", "p2", "p3", "p4"])
        with pytest.raises(PromptLimitReached) as refused:
            await store.apply_report("run", report("b", 1, ("p3", 1, 2), ("p4", 1, 2), **limit))
        assert refused.value.field == "results"
        assert refused.value.new == 2
        assert await snapshot(store, ["p1", "p2", "p3", "p4"]) == before
        # Known prompts and one new one still fit.
        fits = report("c", 2, ("p1", 1, 2), ("p3", 0, 2), **limit)
        applied = await store.apply_report("run", fits)
        assert applied.accepted == 2
        assert (await store.read_counters("run"))["prompts"] == 3

    run_with_store(body)


class _CountingIds(OrderedDict):
    """An id table that counts the entries any iteration over it visits."""

    visited = 0

    def _counted(self, iterator):
        for item in iterator:
            _CountingIds.visited += 1
            yield item

    def __iter__(self):
        return self._counted(super().__iter__())

    def keys(self):
        return self._counted(super().keys())

    def values(self):
        return self._counted(super().values())

    def items(self):
        return self._counted(super().items())


def test_memory_store_report_cost_does_not_grow_with_the_report_ids_held() -> None:
    """Constant work per report: the id table is kept; pruning visits 3 entries a report.

    Work is counted, not timed: the old store rebuilt the table on every report (a new
    dict each time, visiting every id held: 12.5 million visits for 5,000 reports).
    """
    store = MemoryStore()
    groups = (GroupOutcome("p", 1, 2),)
    reports = 5000

    async def body() -> object:
        await store.put_settings("run", SETTINGS)
        await store.apply_report("run", ReportToApply("r0", 1, 1.0, groups))
        run = store._runs["run"]
        run.report_ids = _CountingIds(run.report_ids)
        table = run.report_ids
        _CountingIds.visited = 0
        for index in range(1, reports):
            await store.apply_report("run", ReportToApply(f"r{index}", 1, 1.0, groups))
        assert store._runs["run"].report_ids is table, "the id table was rebuilt"
        return table

    table = asyncio.run(body())
    assert len(table) == reports
    assert _CountingIds.visited <= 4 * reports, f"{_CountingIds.visited} id visits"
