"""The reference arithmetic of `records.py` against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knapsack_service.store import GroupOutcome, ReportToApply
from knapsack_service.store.keys import RunKeys, escape_run_id
from knapsack_service.store.records import (
    EMPTY_RECORD,
    EMPTY_RECORD_BYTES,
    RING_BITS,
    PromptRecord,
    apply_group,
    decode_record,
    decode_records,
    encode_record,
    group_bits,
    round_to_float32,
)
from knapsack_service.summaries import allocation_increments


def bits_of(value: int, width: int) -> str:
    """Newest first (bit 0 on the left)."""
    return "".join("1" if value >> j & 1 else "0" for j in range(width))


def test_group_bits_spread_successes_evenly() -> None:
    assert bits_of(group_bits(0, 4), 4) == "0000"
    assert bits_of(group_bits(4, 4), 4) == "1111"
    assert bits_of(group_bits(1, 4), 4) == "0001"
    assert bits_of(group_bits(2, 4), 4) == "0101"
    assert bits_of(group_bits(3, 8), 8) == "00100101"
    assert group_bits(5, 100) == group_bits(5, 100) & (2**RING_BITS - 1)


@given(s=st.integers(0, 300), extra=st.integers(0, 300))
def test_every_prefix_of_a_group_holds_its_share(s: int, extra: int) -> None:
    t = s + extra
    if t == 0:
        return
    bits = group_bits(s, t)
    for k in range(1, min(t, RING_BITS) + 1):
        ones = bin(bits & ((1 << k) - 1)).count("1")
        assert ones == k * s // t


def test_ring_shifts_older_outcomes_up_and_keeps_48() -> None:
    rec = apply_group(EMPTY_RECORD, 1, 1, None, 0, 1.0)  # one success
    rec = apply_group(rec, 0, 2, None, 1, 1.0)  # two failures, newer
    assert bits_of(rec.ring, 3) == "001"
    rec = apply_group(rec, 47, 47, None, 2, 1.0)
    assert rec.ring == (2**47 - 1) | 0  # the oldest success fell out; 47 + 1 failure kept
    big = apply_group(rec, 60, 60, None, 3, 1.0)
    assert big.ring == 2**48 - 1  # t >= 48: only the group's own first 48 bits


def test_beta_evidence_decays_and_late_reports_never_amplify() -> None:
    rec = apply_group(EMPTY_RECORD, 3, 4, None, 10, 0.5)
    assert (rec.beta_successes, rec.beta_failures, rec.beta_step) == (3.0, 1.0, 10)
    rec = apply_group(rec, 2, 2, None, 12, 0.5)  # decay 0.25 for 2 steps
    assert (rec.beta_successes, rec.beta_failures, rec.beta_step) == (2.75, 0.25, 12)
    late = apply_group(rec, 0, 4, None, 11, 0.5)  # one step late: counts half
    assert (late.beta_successes, late.beta_failures, late.beta_step) == (2.75, 2.25, 12)
    assert late.last_step == 12 and late.trials == 10
    window = apply_group(rec, 1, 1, None, 3, 1.0)  # decay 1: plain counts
    assert window.beta_successes == 3.75


def test_last_visit_and_per_visit_evidence() -> None:
    rec = apply_group(EMPTY_RECORD, 3, 4, None, 10, 0.5)
    assert (rec.visit_successes, rec.visit_trials) == (3, 4)
    assert (rec.visit_beta_successes, rec.visit_beta_failures) == (3.0, 1.0)
    rec = apply_group(rec, 1, 2, None, 10, 0.5)  # same step: the same visit
    assert (rec.visit_successes, rec.visit_trials) == (4, 6)
    assert (rec.visit_beta_successes, rec.visit_beta_failures) == (4.0, 2.0)
    rec = apply_group(rec, 0, 2, None, 30, 0.5)  # 20 steps later: one visit of decay
    assert (rec.visit_successes, rec.visit_trials) == (0, 2)
    assert (rec.visit_beta_successes, rec.visit_beta_failures) == (2.0, 3.0)
    assert rec.beta_successes == round_to_float32(4.0 * 0.5**20)  # per step: nearly gone
    late = apply_group(rec, 2, 2, None, 12, 0.5)  # a late group: one visit old
    assert (late.visit_successes, late.visit_trials) == (0, 2)
    assert (late.visit_beta_successes, late.visit_beta_failures) == (3.0, 3.0)


def test_one_visit_above_uint32_overflows() -> None:
    big = 2**31 - 1
    rec = apply_group(apply_group(EMPTY_RECORD, 0, big, None, 1, 1.0), 0, big, None, 1, 1.0)
    assert rec.visit_trials == 2 * big
    with pytest.raises(OverflowError):
        apply_group(rec, 0, 2, None, 1, 1.0)
    assert apply_group(rec, 0, 2, None, 2, 1.0).visit_trials == 2  # a new visit


def test_mean_tokens_weighted_by_trials_of_reports_that_carried_them() -> None:
    rec = apply_group(EMPTY_RECORD, 1, 2, None, 0, 1.0)
    assert rec.token_trials == 0
    rec = apply_group(rec, 1, 2, 100.0, 0, 1.0)
    rec = apply_group(rec, 1, 6, 200.0, 0, 1.0)
    assert rec.token_trials == 8
    assert rec.mean_tokens == round_to_float32((100.0 * 2 + 200.0 * 6) / 8)


def test_record_encoding_round_trips_and_empty_record_is_unseen() -> None:
    rec = PromptRecord(
        2**48 - 1, 2**40, 2**47 + 5, 7, 1.5, 0.25, 812.0, 2**31 - 1, 3, 5, 2**32 - 1, 2.5, 0.5
    )
    raw = encode_record(rec)
    assert len(raw) == 60
    assert decode_record(raw) == rec
    batch = decode_records(raw + EMPTY_RECORD_BYTES)
    assert batch.successes.tolist() == [2**48 - 1, 0]
    assert batch.ring.tolist() == [2**47 + 5, 0]
    assert batch.seen.tolist() == [True, False]
    assert batch.visit_trials.tolist() == [2**32 - 1, 0]
    assert batch.visit_beta_successes.tolist() == [2.5, 0.0]
    assert batch.mean_tokens[0] == 812.0 and math.isnan(batch.mean_tokens[1])
    with pytest.raises(ValueError):
        decode_records(raw[:-1])


def test_float32_rounding_matches_c_cast() -> None:
    assert round_to_float32(0.1) == float(np.float32(0.1))
    assert round_to_float32(1e300) == math.inf
    assert round_to_float32(3.4028235e38) == float(np.finfo(np.float32).max)


def test_group_and_report_validation() -> None:
    with pytest.raises(ValueError):
        GroupOutcome("p", 3, 2)
    with pytest.raises(ValueError):
        GroupOutcome("p", 0, 0)
    with pytest.raises(ValueError):
        GroupOutcome("p", 0, 1, math.nan)
    with pytest.raises(TypeError):
        GroupOutcome("p", 0.5, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ReportToApply("r", 0, 0.0, (GroupOutcome("p", 0, 1),))
    with pytest.raises(ValueError):
        ReportToApply("r", -1, 1.0, (GroupOutcome("p", 0, 1),))
    with pytest.raises(ValueError):
        ReportToApply("r", 0, 1.0, ())


def test_allocation_increments_validate_shapes() -> None:
    with pytest.raises(ValueError):
        allocation_increments(np.array([1, 2]), np.array([0.5]))
    with pytest.raises(ValueError):
        allocation_increments(np.array([-1]), np.array([0.5]))
    assert allocation_increments(np.array([], dtype=np.int64), np.array([])) == {
        "allocations": 1,
        "allocated_rollouts": 0,
        "allocated_prompts": 0,
    }


@settings(max_examples=100)
@given(st.text(min_size=1, max_size=40))
def test_escaped_run_ids_are_injective_and_tag_safe(run_id: str) -> None:
    escaped = escape_run_id(run_id)
    assert set(escaped) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-%")
    assert escape_run_id(run_id + "x") != escaped
    prefix = RunKeys(run_id).prefix
    assert prefix.count("{") == 1 and prefix.count("}") == 1


def test_escape_distinguishes_near_misses() -> None:
    ids = ["a", "a%", "a%25", "a}", "a%7D", "é", "%C3%A9"]
    assert len({escape_run_id(i) for i in ids}) == len(ids)
