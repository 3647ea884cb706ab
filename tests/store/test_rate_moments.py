"""The run's rate moments: kept with every report, equal on both stores, gone with the run.

Issue 12, item 10: the pooled Beta prior was fitted over the prompts of a request, so
a prompt's estimate depended on its companions. The stores now keep the moments of
every prompt's cumulative rate, and the prior is fitted from those.
"""

from __future__ import annotations

import random
from dataclasses import astuple

import numpy as np
import pytest

from knapsack_service.engine import pooled_beta_prior, pooled_beta_prior_from_moments
from knapsack_service.store import (
    GroupOutcome,
    PromptLimitReached,
    RateMoments,
    RedisStore,
    ReportToApply,
    Store,
)
from knapsack_service.store.base import NO_MOMENTS
from knapsack_service.store.keys import RunKeys
from knapsack_service.store.records import (
    add_moments,
    apply_groups_to_records,
    rate_moments_change,
)
from knapsack_service.store.redis_store import MOMENT_FIELDS
from tests.store.conftest import StoreRunner, store_runner

SETTINGS = '{"estimator": {"kind": "beta", "prior": "pooled"}}'


def random_reports(seed: int, count: int, prompts: int) -> list[ReportToApply]:
    """Reports of varied rates and sizes; prompts repeat within and across reports."""
    rng = random.Random(seed)
    reports = []
    for index in range(count):
        groups = []
        for _ in range(rng.randint(1, 12)):
            trials = rng.choice([1, 3, 7, 8, 16, 33])
            groups.append(
                GroupOutcome(f"p{rng.randrange(prompts)}", rng.randint(0, trials), trials)
            )
        reports.append(ReportToApply(f"r{index}", index // 3, 0.9, tuple(groups)))
    return reports


def reference_moments(reports: list[ReportToApply]) -> RateMoments:
    """`records.py` applied report by report: what both stores must hold, exactly."""
    records: dict[str, bytes] = {}
    moments = NO_MOMENTS
    for report in reports:
        updated = apply_groups_to_records(records, report.groups, report.step, report.decay)
        moments = add_moments(moments, rate_moments_change(records, updated))
        records.update(updated)
    return moments


def fitted(moments: RateMoments) -> tuple[float, float]:
    return pooled_beta_prior_from_moments(
        moments.count, moments.rate_sum, moments.rate_square_sum, moments.inverse_trials_sum
    )


def test_moments_match_the_reference_and_the_per_array_fit(run_with_store: StoreRunner) -> None:
    reports = random_reports(seed=3, count=60, prompts=40)
    ids = [f"p{i}" for i in range(40)]

    async def body(store: Store) -> None:
        await store.put_settings("m", SETTINGS)
        for report in reports:
            await store.apply_report("m", report)
        _, everything = await store.read_batch("m", ids)
        _, one = await store.read_batch("m", ["p7"])
        _, none = await store.read_batch("m", [])
        # The same run-level moments whatever the batch names, equal to the reference
        # bit for bit (the Lua repeats records.py's doubles in the same order).
        assert everything.run_moments == one.run_moments == none.run_moments
        assert everything.run_moments == reference_moments(reports)
        assert everything.run_moments.count == float(np.count_nonzero(everything.trials))
        a, b = fitted(one.run_moments)
        expected = pooled_beta_prior(everything.successes, everything.trials)
        assert expected != (1.0, 1.0)  # the data has spread: a real fit is compared
        assert (a, b) == pytest.approx(expected, rel=1e-9, abs=1e-9)

    run_with_store(body)


def test_refused_reports_leave_the_moments_and_deleting_drops_them(
    run_with_store: StoreRunner,
) -> None:
    reports = random_reports(seed=5, count=10, prompts=6)

    async def body(store: Store) -> None:
        await store.put_settings("d", SETTINGS)
        for report in reports:
            await store.apply_report("d", report)
        before = (await store.read_batch("d", ["p0"]))[1].run_moments
        duplicate = await store.apply_report("d", reports[0])
        assert duplicate.duplicate
        tracked = (await store.read_counters("d"))["prompts"]
        limited = ReportToApply(
            "over", 99, 0.9, (GroupOutcome("brand-new", 1, 2),), max_prompts=tracked
        )
        with pytest.raises(PromptLimitReached):
            await store.apply_report("d", limited)
        assert (await store.read_batch("d", ["p0"]))[1].run_moments == before
        assert await store.delete_run("d")
        await store.put_settings("d", SETTINGS)
        assert (await store.read_batch("d", ["p0"]))[1].run_moments == NO_MOMENTS
        counters = await store.read_counters("d")
        assert counters["reports"] == 0

    run_with_store(body)


def test_a_run_from_before_the_moments_gets_them_from_its_records(redis_url: str) -> None:
    # Records written by an older version (no moments in the run's meta): the next
    # report sums them from the records once instead of adding its change to zeros.
    reports = random_reports(seed=8, count=12, prompts=10)

    async def body(store: Store) -> None:
        assert isinstance(store, RedisStore)
        await store.put_settings("old", SETTINGS)
        for report in reports[:-1]:
            await store.apply_report("old", report)
        await store.client.hdel(RunKeys("old").meta, *MOMENT_FIELDS)
        assert (await store.read_batch("old", ["p0"]))[1].run_moments == NO_MOMENTS
        await store.apply_report("old", reports[-1])
        _, batch = await store.read_batch("old", [f"p{i}" for i in range(10)])
        expected = reference_moments(reports)
        assert batch.run_moments.count == expected.count
        kept = np.array(astuple(batch.run_moments))
        np.testing.assert_allclose(kept, astuple(expected), rtol=1e-12)

    store_runner(lambda: RedisStore.from_url(redis_url))(body)
