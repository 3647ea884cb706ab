"""Contract of `Store`: every test runs on the memory store and on a real redis-server."""

from __future__ import annotations

import asyncio
import math
import random

import numpy as np
import pytest

from knapsack_service.store import (
    GroupOutcome,
    PromptBatch,
    ReportToApply,
    RunNotFound,
    Store,
)
from knapsack_service.store.records import (
    EMPTY_RECORD,
    PromptRecord,
    apply_group,
)
from knapsack_service.summaries import allocation_increments, summary_from_fields
from tests.store.conftest import StoreRunner

SETTINGS = '{"strategy": "knapsack", "min_n": 2}'


def summaries_of(rows: list[tuple[int, dict[str, int]]]) -> list[dict]:
    """The store's raw step counters as the contract's summary fields."""
    return [summary_from_fields(step, fields) for step, fields in rows]


ODD_IDS = [
    "a/b",
    "a:b",
    "{tag}",
    "}{",
    "with space",
    "star*?[x]",
    "new\nline",
    "quote\"'`",
    "\u00e9t\u00e9-\u4e2d\u6587-\U0001f600",
    "x" * 256,
    "%41",
    "A",
    "krl:{r}:p",
]


def expected_records(reports: list[ReportToApply]) -> dict[str, PromptRecord]:
    """Reference records: `records.apply_group` over every group, in order."""
    records: dict[str, PromptRecord] = {}
    for report in reports:
        for g in report.groups:
            records[g.prompt_id] = apply_group(
                records.get(g.prompt_id, EMPTY_RECORD),
                g.successes,
                g.trials,
                g.mean_response_tokens,
                report.step,
                report.decay,
            )
    return records


def assert_batch_matches(batch: PromptBatch, ids: list[str], records: dict[str, PromptRecord]):
    for i, pid in enumerate(ids):
        rec = records.get(pid, EMPTY_RECORD)
        assert batch.seen[i] == (pid in records), pid
        assert batch.successes[i] == rec.successes, pid
        assert batch.trials[i] == rec.trials, pid
        assert batch.ring[i] == rec.ring, pid
        assert batch.beta_successes[i] == rec.beta_successes, pid
        assert batch.beta_failures[i] == rec.beta_failures, pid
        assert batch.beta_step[i] == rec.beta_step, pid
        assert batch.last_step[i] == rec.last_step, pid
        assert batch.visit_successes[i] == rec.visit_successes, pid
        assert batch.visit_trials[i] == rec.visit_trials, pid
        assert batch.visit_beta_successes[i] == rec.visit_beta_successes, pid
        assert batch.visit_beta_failures[i] == rec.visit_beta_failures, pid
        if rec.token_trials:
            assert batch.mean_tokens[i] == rec.mean_tokens, pid
        else:
            assert math.isnan(batch.mean_tokens[i]), pid


def random_reports(seed: int, prompts: list[str], count: int) -> list[ReportToApply]:
    rng = random.Random(seed)
    reports = []
    for r in range(count):
        groups = []
        for _ in range(rng.randint(1, 6)):
            t = rng.choice([1, 2, 3, 7, 8, 16, 47, 48, 49, 100])
            s = rng.randint(0, t)
            tokens = rng.choice([None, 0.0, 123.25, rng.uniform(1, 5000)])
            groups.append(GroupOutcome(rng.choice(prompts), s, t, tokens, s in (0, t)))
        step = rng.randint(0, 30)  # steps out of order: late reports happen
        decay = rng.choice([1.0, 0.9, 0.5, 0.999])
        reports.append(ReportToApply(f"rep-{seed}-{r}", step, decay, tuple(groups)))
    return reports


def test_settings_round_trip(run_with_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        assert isinstance(store, Store)
        assert await store.get_settings("run") is None
        assert await store.put_settings("run", SETTINGS) is True
        assert await store.get_settings("run") == SETTINGS
        assert await store.put_settings("run", '{"min_n": 4}') is False
        assert await store.get_settings("run") == '{"min_n": 4}'
        assert await store.list_runs() == ["run"]
        counters = await store.read_counters("run")
        assert counters == {
            "reports": 0,
            "duplicate_reports": 0,
            "results": 0,
            "rollouts": 0,
            "successes": 0,
            "allocations": 0,
            "prompts": 0,
            "last_step": None,
        }
        await store.ping()

    run_with_store(body)


def test_read_of_unseen_ids(run_with_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        settings, batch = await store.read_batch("missing", ["a", "b"])
        assert settings is None
        assert batch.seen.tolist() == [False, False]
        await store.put_settings("run", SETTINGS)
        settings, batch = await store.read_batch("run", ["a", "b", "a"])
        assert settings == SETTINGS
        assert len(batch) == 3
        assert batch.seen.dtype == np.bool_ and not batch.seen.any()
        assert batch.trials.dtype == np.int64 and batch.trials.tolist() == [0, 0, 0]
        assert batch.last_step.tolist() == [-1, -1, -1]
        assert batch.beta_step.tolist() == [-1, -1, -1]
        assert np.isnan(batch.mean_tokens).all()
        settings, empty = await store.read_batch("run", [])
        assert settings == SETTINGS and len(empty) == 0

    run_with_store(body)


def test_apply_report_updates_records_and_counters(run_with_store: StoreRunner) -> None:
    report = ReportToApply(
        "r1",
        5,
        0.9,
        (
            GroupOutcome("p1", 3, 8, 512.0),
            GroupOutcome("p2", 0, 4, None, True),
            GroupOutcome("p3", 4, 4, 100.5, True),
        ),
    )

    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        result = await store.apply_report("run", report)
        assert (result.accepted, result.duplicate) == (3, False)
        ids = ["p1", "p2", "p3", "p4"]
        _, batch = await store.read_batch("run", ids)
        assert batch.successes.tolist() == [3, 0, 4, 0]
        assert batch.trials.tolist() == [8, 4, 4, 0]
        assert batch.last_step.tolist() == [5, 5, 5, -1]
        assert batch.mean_tokens[0] == 512.0 and math.isnan(batch.mean_tokens[1])
        assert_batch_matches(batch, ids, expected_records([report]))
        counters = await store.read_counters("run")
        assert counters["reports"] == 1
        assert counters["results"] == 3
        assert counters["rollouts"] == 16
        assert counters["successes"] == 7
        assert counters["prompts"] == 3
        assert counters["last_step"] == 5

    run_with_store(body)


def test_duplicate_report_counts_once(run_with_store: StoreRunner) -> None:
    report = ReportToApply("same", 1, 1.0, (GroupOutcome("p", 1, 2),))

    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        first = await store.apply_report("run", report)
        second = await store.apply_report("run", report)
        third = await store.apply_report("run", report)
        assert (first.accepted, first.duplicate) == (1, False)
        # A duplicate answers with the original acknowledgement, counts included.
        assert (second.accepted, second.duplicate) == (1, True)
        assert (third.accepted, third.duplicate) == (1, True)
        _, batch = await store.read_batch("run", ["p"])
        assert batch.trials.tolist() == [2] and batch.successes.tolist() == [1]
        counters = await store.read_counters("run")
        assert counters["reports"] == 1
        assert counters["duplicate_reports"] == 2
        assert counters["rollouts"] == 2
        (summary,) = summaries_of(await store.read_summary("run"))
        assert summary["step"] == 1 and summary["groups"] == 1

    run_with_store(body)


def test_report_for_missing_run_changes_nothing(run_with_store: StoreRunner) -> None:
    report = ReportToApply("r", 1, 1.0, (GroupOutcome("p", 1, 2),))

    async def body(store: Store) -> None:
        with pytest.raises(RunNotFound):
            await store.apply_report("ghost", report)
        with pytest.raises(RunNotFound):
            await store.record_allocation(
                "ghost", 1, allocation_increments(np.array([2]), np.array([0.5]))
            )
        with pytest.raises(RunNotFound):
            await store.read_counters("ghost")
        with pytest.raises(RunNotFound):
            await store.read_summary("ghost")
        assert await store.list_runs() == []
        # Created afterwards, the run starts empty and the report id is new to it.
        await store.put_settings("ghost", SETTINGS)
        _, batch = await store.read_batch("ghost", ["p"])
        assert not batch.seen.any()
        assert (await store.read_counters("ghost"))["reports"] == 0
        assert not (await store.apply_report("ghost", report)).duplicate

    run_with_store(body)


def test_concurrent_reporters_give_exact_totals(run_with_store: StoreRunner) -> None:
    prompts = [f"p{i}" for i in range(40)]
    reports = [
        ReportToApply(
            f"worker{w}",
            3,
            0.9,
            tuple(GroupOutcome(p, (w + i) % 5, 4 + w % 3) for i, p in enumerate(prompts)),
        )
        for w in range(8)
    ]

    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        results = await asyncio.gather(*(store.apply_report("run", r) for r in reports))
        assert all(r.accepted == len(prompts) and not r.duplicate for r in results)
        _, batch = await store.read_batch("run", prompts)
        for i, p in enumerate(prompts):
            assert batch.trials[i] == sum(
                next(g for g in r.groups if g.prompt_id == p).trials for r in reports
            )
            assert batch.successes[i] == sum((w + i) % 5 for w in range(8))
        counters = await store.read_counters("run")
        assert counters["reports"] == 8
        assert counters["results"] == 8 * len(prompts)
        assert counters["rollouts"] == sum(g.trials for r in reports for g in r.groups)
        assert counters["successes"] == sum(g.successes for r in reports for g in r.groups)
        (summary,) = summaries_of(await store.read_summary("run"))
        assert summary["rollouts"] == counters["rollouts"]
        assert summary["groups"] == 8 * len(prompts)

    run_with_store(body)


def test_odd_ids_round_trip_exactly(run_with_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        for n, run_id in enumerate(ODD_IDS):
            await store.put_settings(run_id, f'{{"n": {n}}}')
        assert await store.list_runs() == sorted(ODD_IDS)
        for n, run_id in enumerate(ODD_IDS):
            assert await store.get_settings(run_id) == f'{{"n": {n}}}'
        groups = tuple(GroupOutcome(pid, i % 3, 3) for i, pid in enumerate(ODD_IDS))
        for run_id in ODD_IDS[:3]:
            await store.apply_report(run_id, ReportToApply(ODD_IDS[-1], 2, 1.0, groups))
        _, batch = await store.read_batch(ODD_IDS[0], ODD_IDS)
        assert batch.seen.all()
        assert batch.successes.tolist() == [i % 3 for i in range(len(ODD_IDS))]
        # Near-miss ids stay distinct.
        _, other = await store.read_batch(ODD_IDS[0], ["a/b ", "A ", "a\\/b", "x" * 255])
        assert not other.seen.any()
        assert (await store.read_counters(ODD_IDS[1]))["prompts"] == len(ODD_IDS)
        assert (await store.read_counters(ODD_IDS[5]))["prompts"] == 0

    run_with_store(body)


def test_ring_and_beta_match_reference(run_with_store: StoreRunner) -> None:
    prompts = ["a", "b", "c", "d"]
    reports = random_reports(seed=7, prompts=prompts, count=25)

    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        for report in reports:
            await store.apply_report("run", report)
        ids = [*prompts, "never"]
        _, batch = await store.read_batch("run", ids)
        assert_batch_matches(batch, ids, expected_records(reports))

    run_with_store(body)


def test_summary_counters(run_with_store: StoreRunner) -> None:
    async def body(store: Store) -> None:
        await store.put_settings("run", SETTINGS)
        await store.apply_report(
            "run",
            ReportToApply(
                "a",
                4,
                1.0,
                (
                    GroupOutcome("p1", 2, 4),  # effective
                    GroupOutcome("p2", 4, 4, zero_variance=True),  # all success
                    GroupOutcome("p3", 0, 6, zero_variance=True),  # all failure
                ),
            ),
        )
        await store.apply_report("run", ReportToApply("b", 2, 1.0, (GroupOutcome("p1", 1, 2),)))
        await store.record_allocation(
            "run",
            4,
            allocation_increments(
                np.array([0, 1, 2, 3, 4, 8, 9, 128, 129, 6], dtype=np.int64),
                np.array([np.nan, 0.0, 1.0, 0.2, 0.2000001, 0.5, 0.8, 0.95, 0.05, np.nan]),
            ),
        )
        summaries = summaries_of(await store.read_summary("run"))
        assert [s["step"] for s in summaries] == [2, 4]
        step4 = summaries[1]
        assert step4["rollouts"] == 14
        assert step4["groups"] == 3
        assert step4["successes"] == 6
        assert step4["effective_rollouts"] == 4
        assert step4["all_success_groups"] == 1 and step4["all_success_rollouts"] == 4
        assert step4["all_failure_groups"] == 1 and step4["all_failure_rollouts"] == 6
        assert step4["zero_variance_groups"] == 2
        assert step4["allocations"] == 1
        assert step4["allocated_prompts"] == 10
        assert step4["allocated_rollouts"] == 290
        assert step4["budget_histogram"] == {
            "0": 1,
            "1": 1,
            "2": 1,
            "3-4": 2,
            "5-8": 2,
            "9-16": 1,
            "65-128": 1,
            "129+": 1,
        }
        assert step4["difficulty_buckets"] == {
            "unseen": {"prompts": 2, "rollouts": 6},
            "0": {"prompts": 1, "rollouts": 1},
            "(0,0.2]": {"prompts": 2, "rollouts": 132},
            "(0.2,0.4]": {"prompts": 1, "rollouts": 4},
            "(0.4,0.6]": {"prompts": 1, "rollouts": 8},
            "(0.6,0.8]": {"prompts": 1, "rollouts": 9},
            "(0.8,1)": {"prompts": 1, "rollouts": 128},
            "1": {"prompts": 1, "rollouts": 2},
        }
        assert summaries[0]["budget_histogram"] == {} and summaries[0]["groups"] == 1
        assert [step for step, _ in await store.read_summary("run", last=1)] == [4]
        assert await store.read_summary("run", last=0) == []
        assert [step for step, _ in await store.read_summary("run", last=5)] == [2, 4]
        assert (await store.read_counters("run"))["allocations"] == 1

    run_with_store(body)


def test_delete_run_removes_it_and_only_it(run_with_store: StoreRunner) -> None:
    report = ReportToApply("r", 1, 1.0, (GroupOutcome("p", 1, 2),))

    async def body(store: Store) -> None:
        for run_id in ("doomed", "kept"):
            await store.put_settings(run_id, SETTINGS)
            await store.apply_report(run_id, report)
            await store.record_allocation(
                run_id, 1, allocation_increments(np.array([2]), np.array([0.5]))
            )
        assert await store.delete_run("doomed") is True
        assert await store.delete_run("doomed") is False
        assert await store.get_settings("doomed") is None
        assert await store.list_runs() == ["kept"]
        with pytest.raises(RunNotFound):
            await store.read_counters("doomed")
        _, batch = await store.read_batch("kept", ["p"])
        assert batch.trials.tolist() == [2]
        assert (await store.read_counters("kept"))["reports"] == 1
        # Re-created, the run starts from nothing (report ids included).
        await store.put_settings("doomed", SETTINGS)
        assert not (await store.apply_report("doomed", report)).duplicate
        assert (await store.read_counters("doomed"))["reports"] == 1

    run_with_store(body)
