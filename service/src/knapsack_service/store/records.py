"""Per-prompt records: the packed binary layout and the arithmetic of applying a group.

This module is the reference semantics. The memory store calls it directly; the Redis
store runs `lua/apply_report.lua`, which repeats the same operations in the same order
on IEEE doubles (Lua 5.1 numbers) and rounds to float32 at the same points, so both
stores produce byte-identical records (tests/store check it).

Record layout, little endian, 60 bytes (Lua `struct` format `<I6I6I6I6fffi4i4I4I4ff`):

| offset | field                | type    | meaning                                              |
| ------ | -------------------- | ------- | ---------------------------------------------------- |
| 0      | successes            | uint48  | cumulative successes, never decayed                  |
| 6      | trials               | uint48  | cumulative trials                                    |
| 12     | ring                 | uint48  | last 48 outcomes, newest in bit 0, 1 = success       |
| 18     | token_trials         | uint48  | trials of the reports that carried response tokens   |
| 24     | beta_successes       | float32 | Beta evidence for success, decayed to beta_step      |
| 28     | beta_failures        | float32 | Beta evidence for failure, decayed to beta_step      |
| 32     | mean_tokens          | float32 | trial-weighted mean response tokens (0 if unknown)   |
| 36     | beta_step            | int32   | step the Beta evidence is decayed to, -1 = never     |
| 40     | last_step            | int32   | largest reported step, -1 = never                    |
| 44     | visit_successes      | uint32  | successes of the last visit (groups of last_step)    |
| 48     | visit_trials         | uint32  | trials of the last visit                             |
| 52     | visit_beta_successes | float32 | Beta evidence for success, decayed once per visit    |
| 56     | visit_beta_failures  | float32 | Beta evidence for failure, decayed once per visit    |

A visit is a step in which the prompt was reported: every group of one step adds to
one visit, a larger step starts a new one, and a group of an older step (a late
report) leaves the last visit as it is. The last visit feeds the paper's estimator
(`LastVisitEstimator`: its mean when it had >= 16 rollouts); the per-visit evidence
lets knapsack-bayes decay by visits of the prompt instead of global steps (a prompt
seen once per epoch keeps its evidence across the epoch). Both evidence pairs are
kept, so a run chooses its decay unit without a migration.

Why 60 bytes: with a 3-byte sds header and terminator the value takes jemalloc's
64-byte size class (44 bytes fitted the 48-byte class; any field more fills 64), which
keeps a tracked prompt near 140 bytes of Redis memory (dict entry, field, value,
bucket) against the 150-byte target (bench/redis_memory.py). 48-bit counters
hold 2.8e14 trials; the window estimator needs at most 48 outcomes (`WindowEstimator`
allows `window <= 48`); float32 keeps Beta evidence and token means to 7 digits,
far below the noise of a success-rate estimate.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from knapsack_service.store.base import NO_MOMENTS, GroupOutcome, PromptBatch, RateMoments
from knapsack_service.store.errors import CounterOverflow

#: Outcomes kept per prompt (the largest window the wire model allows).
RING_BITS = 48
#: Largest value of a 48-bit counter.
MAX_COUNTER = 2**48 - 1
#: `struct` format of a record, identical in Python and in the Lua scripts.
RECORD_FORMAT = "<6s6s6s6sfffiiIIff"
RECORD_SIZE = 60
#: Largest trials of one visit (a uint32).
MAX_VISIT_TRIALS = 2**32 - 1

#: numpy view of a packed record; 48-bit counters are read as 6 raw bytes.
RECORD_DTYPE = np.dtype(
    [
        ("successes", "u1", (6,)),
        ("trials", "u1", (6,)),
        ("ring", "u1", (6,)),
        ("token_trials", "u1", (6,)),
        ("beta_successes", "<f4"),
        ("beta_failures", "<f4"),
        ("mean_tokens", "<f4"),
        ("beta_step", "<i4"),
        ("last_step", "<i4"),
        ("visit_successes", "<u4"),
        ("visit_trials", "<u4"),
        ("visit_beta_successes", "<f4"),
        ("visit_beta_failures", "<f4"),
    ]
)
assert RECORD_DTYPE.itemsize == RECORD_SIZE == struct.calcsize(RECORD_FORMAT)

#: Per-step counters that reports increment (all keys of a summary dict besides the
#: histograms, which live with the rest of the summary in `knapsack_service.summaries`).
REPORT_SUMMARY_FIELDS: tuple[str, ...] = (
    "rollouts",
    "groups",
    "successes",
    "effective_rollouts",
    "all_success_groups",
    "all_failure_groups",
    "zero_variance_groups",
    "all_success_rollouts",
    "all_failure_rollouts",
)


@dataclass(frozen=True, slots=True)
class PromptRecord:
    """One prompt's statistics; floats are always float32-representable."""

    successes: int = 0
    trials: int = 0
    ring: int = 0
    token_trials: int = 0
    beta_successes: float = 0.0
    beta_failures: float = 0.0
    mean_tokens: float = 0.0
    beta_step: int = -1
    last_step: int = -1
    visit_successes: int = 0
    visit_trials: int = 0
    visit_beta_successes: float = 0.0
    visit_beta_failures: float = 0.0


EMPTY_RECORD = PromptRecord()


def round_to_float32(x: float) -> float:
    """Round a double to the nearest float32 exactly as C's `(float)x` does.

    Lua's `struct.pack('f', x)` is that C cast; Python's `struct.pack('<f')` does the
    same cast but raises where the result overflows to infinity, which the cast does
    not.
    """
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _power(base: float, exponent: int) -> float:
    # Lua's `^` is C pow(). Python's float ** int calls the same pow() but raises on
    # ERANGE; an underflow to a subnormal is 0 after the float32 rounding anyway.
    try:
        return base ** float(exponent)
    except OverflowError:
        return 0.0


def group_bits(successes: int, trials: int) -> int:
    """Outcome bits of one group, successes spread evenly, newest in bit 0.

    Bit j (0 <= j < min(trials, 48)) is 1 iff floor((j+1)s/t) > floor(js/t): every
    prefix of the group holds its fair share of successes, so a window cutting
    through a group sees the group's rate, not an artefact of ordering.
    """
    bits = 0
    for j in range(min(trials, RING_BITS)):
        if (j + 1) * successes // trials > j * successes // trials:
            bits |= 1 << j
    return bits


def apply_group(
    record: PromptRecord,
    successes: int,
    trials: int,
    mean_tokens: float | None,
    step: int,
    decay: float,
) -> PromptRecord:
    """Apply one group to a record (the reference for `lua/apply_report.lua`).

    Raises:
        OverflowError: A 48-bit counter would overflow.

    """
    new_successes = record.successes + successes
    new_trials = record.trials + trials

    bits = group_bits(successes, trials)
    if trials >= RING_BITS:
        ring = bits
    else:
        ring = ((record.ring % (1 << (RING_BITS - trials))) << trials) + bits

    # Beta evidence: decay what exists up to the newest step; a late report (step
    # older than beta_step) counts decayed, never amplified.
    beta_s, beta_f, beta_step = record.beta_successes, record.beta_failures, record.beta_step
    if step > beta_step:
        factor = _power(decay, step - beta_step)
        beta_s = beta_s * factor
        beta_f = beta_f * factor
        beta_step = step
    weight = _power(decay, beta_step - step)
    beta_s = beta_s + successes * weight
    beta_f = beta_f + (trials - successes) * weight

    # The last visit and the per-visit evidence: a larger step is a new visit (the
    # evidence so far decays once), the same step adds to it, an older step (a late
    # report) counts one visit old and leaves the last visit alone.
    visit_s, visit_t = record.visit_successes, record.visit_trials
    visit_bs, visit_bf = record.visit_beta_successes, record.visit_beta_failures
    if step > record.last_step:
        visit_s, visit_t = successes, trials
        visit_bs = visit_bs * decay + successes
        visit_bf = visit_bf * decay + (trials - successes)
    elif step == record.last_step:
        visit_s, visit_t = visit_s + successes, visit_t + trials
        visit_bs = visit_bs + successes
        visit_bf = visit_bf + (trials - successes)
    else:
        visit_bs = visit_bs + successes * decay
        visit_bf = visit_bf + (trials - successes) * decay

    token_trials, mean = record.token_trials, record.mean_tokens
    if mean_tokens is not None:
        if token_trials == 0:
            mean = mean_tokens
        else:
            mean = (mean * token_trials + mean_tokens * trials) / (token_trials + trials)
        token_trials = token_trials + trials

    if max(new_successes, new_trials, token_trials) > MAX_COUNTER:
        raise OverflowError("a prompt's cumulative trials exceed 2**48 - 1")
    if visit_t > MAX_VISIT_TRIALS:
        raise OverflowError("a prompt's trials in one step exceed 2**32 - 1")
    return PromptRecord(
        successes=new_successes,
        trials=new_trials,
        ring=ring,
        token_trials=token_trials,
        beta_successes=round_to_float32(beta_s),
        beta_failures=round_to_float32(beta_f),
        mean_tokens=round_to_float32(mean),
        beta_step=beta_step,
        last_step=max(record.last_step, step),
        visit_successes=visit_s,
        visit_trials=visit_t,
        visit_beta_successes=round_to_float32(visit_bs),
        visit_beta_failures=round_to_float32(visit_bf),
    )


def _u48(value: int) -> bytes:
    return value.to_bytes(6, "little")


def encode_record(record: PromptRecord) -> bytes:
    """Pack a record into its 60-byte layout."""
    return struct.pack(
        RECORD_FORMAT,
        _u48(record.successes),
        _u48(record.trials),
        _u48(record.ring),
        _u48(record.token_trials),
        record.beta_successes,
        record.beta_failures,
        record.mean_tokens,
        record.beta_step,
        record.last_step,
        record.visit_successes,
        record.visit_trials,
        record.visit_beta_successes,
        record.visit_beta_failures,
    )


def decode_record(raw: bytes) -> PromptRecord:
    """Unpack one 60-byte record."""
    (s, t, ring, tt, beta_s, beta_f, mean, beta_step, last_step, vs, vt, vbs, vbf) = struct.unpack(
        RECORD_FORMAT, raw
    )
    return PromptRecord(
        successes=int.from_bytes(s, "little"),
        trials=int.from_bytes(t, "little"),
        ring=int.from_bytes(ring, "little"),
        token_trials=int.from_bytes(tt, "little"),
        beta_successes=beta_s,
        beta_failures=beta_f,
        mean_tokens=mean,
        beta_step=beta_step,
        last_step=last_step,
        visit_successes=vs,
        visit_trials=vt,
        visit_beta_successes=vbs,
        visit_beta_failures=vbf,
    )


EMPTY_RECORD_BYTES = encode_record(EMPTY_RECORD)


def _column_u48(column: np.ndarray) -> np.ndarray:
    wide = np.zeros((column.shape[0], 8), dtype=np.uint8)
    wide[:, :6] = column
    return wide.view("<u8").reshape(-1).astype(np.int64)


def decode_records(blob: bytes, run_moments: RateMoments = NO_MOMENTS) -> PromptBatch:
    """Decode concatenated records (`EMPTY_RECORD_BYTES` for unseen prompts) at once.

    `run_moments` (the run's, read with the records) travels with the batch.

    Raises:
        ValueError: The blob is not a whole number of records.

    """
    if len(blob) % RECORD_SIZE:
        raise ValueError(f"record blob of {len(blob)} bytes is not a multiple of {RECORD_SIZE}")
    packed = np.frombuffer(blob, dtype=RECORD_DTYPE)
    token_trials = _column_u48(packed["token_trials"])
    last_step = packed["last_step"].astype(np.int64)
    return PromptBatch(
        successes=_column_u48(packed["successes"]),
        trials=_column_u48(packed["trials"]),
        ring=_column_u48(packed["ring"]),
        beta_successes=packed["beta_successes"].astype(np.float64),
        beta_failures=packed["beta_failures"].astype(np.float64),
        beta_step=packed["beta_step"].astype(np.int64),
        last_step=last_step,
        mean_tokens=np.where(token_trials > 0, packed["mean_tokens"].astype(np.float64), np.nan),
        seen=last_step >= 0,
        visit_successes=packed["visit_successes"].astype(np.int64),
        visit_trials=packed["visit_trials"].astype(np.int64),
        visit_beta_successes=packed["visit_beta_successes"].astype(np.float64),
        visit_beta_failures=packed["visit_beta_failures"].astype(np.float64),
        run_moments=run_moments,
    )


def summarise_groups(groups: Iterable[GroupOutcome]) -> dict[str, int]:
    """Per-step summary increments of a report's groups (zero counters included)."""
    totals = dict.fromkeys(REPORT_SUMMARY_FIELDS, 0)
    for group in groups:
        s, t = group.successes, group.trials
        totals["rollouts"] += t
        totals["groups"] += 1
        totals["successes"] += s
        if 0 < s < t:
            totals["effective_rollouts"] += t
        if s == t:
            totals["all_success_groups"] += 1
            totals["all_success_rollouts"] += t
        if s == 0:
            totals["all_failure_groups"] += 1
            totals["all_failure_rollouts"] += t
        if group.zero_variance:
            totals["zero_variance_groups"] += 1
    return totals


def apply_groups_to_records(
    records: Mapping[str, bytes], groups: Sequence[GroupOutcome], step: int, decay: float
) -> dict[str, bytes]:
    """Apply groups in order; return the new packed record of every touched prompt.

    Nothing is returned (and nothing should be written) if any group fails.

    Raises:
        CounterOverflow: A group would overflow its prompt's 48-bit counters (the
            error names the group by its index in the report).

    """
    updated: dict[str, bytes] = {}
    for index, group in enumerate(groups):
        raw = updated.get(group.prompt_id) or records.get(group.prompt_id) or EMPTY_RECORD_BYTES
        try:
            record = apply_group(
                decode_record(raw),
                group.successes,
                group.trials,
                group.mean_response_tokens,
                step,
                decay,
            )
        except OverflowError as error:
            raise CounterOverflow(index, group.prompt_id) from error
        updated[group.prompt_id] = encode_record(record)
    return updated


def _trials_and_rate(raw: bytes) -> tuple[int, float]:
    successes = int.from_bytes(raw[0:6], "little")
    trials = int.from_bytes(raw[6:12], "little")
    return trials, (successes / trials if trials else 0.0)


def rate_moments_change(
    records_before: Mapping[str, bytes], updated: Mapping[str, bytes]
) -> RateMoments:
    """The change a report makes to the run's `RateMoments` (reference for the Lua).

    For each touched prompt, in the order `apply_groups_to_records` first met it,
    its old terms (if it had trials) are taken out and its new ones put in, summed
    in doubles exactly as `lua/apply_report.lua` does (s / t of integers below 2^53
    is the same IEEE division in both), so both stores keep equal moments.
    """
    count = rate_sum = square_sum = inverse_sum = 0.0
    for prompt_id, new_raw in updated.items():
        old_raw = records_before.get(prompt_id)
        if old_raw is not None:
            old_trials, old_rate = _trials_and_rate(old_raw)
            if old_trials > 0:
                count = count - 1.0
                rate_sum = rate_sum - old_rate
                square_sum = square_sum - old_rate * old_rate
                inverse_sum = inverse_sum - 1.0 / old_trials
        new_trials, new_rate = _trials_and_rate(new_raw)
        count = count + 1.0
        rate_sum = rate_sum + new_rate
        square_sum = square_sum + new_rate * new_rate
        inverse_sum = inverse_sum + 1.0 / new_trials
    return RateMoments(count, rate_sum, square_sum, inverse_sum)


def add_moments(moments: RateMoments, change: RateMoments) -> RateMoments:
    """`moments` plus a report's `change`, field by field (one addition each, as in Lua)."""
    return RateMoments(
        moments.count + change.count,
        moments.rate_sum + change.rate_sum,
        moments.rate_square_sum + change.rate_square_sum,
        moments.inverse_trials_sum + change.inverse_trials_sum,
    )


__all__ = [
    "EMPTY_RECORD",
    "EMPTY_RECORD_BYTES",
    "MAX_COUNTER",
    "MAX_VISIT_TRIALS",
    "RECORD_DTYPE",
    "RECORD_FORMAT",
    "RECORD_SIZE",
    "REPORT_SUMMARY_FIELDS",
    "RING_BITS",
    "PromptRecord",
    "add_moments",
    "apply_group",
    "apply_groups_to_records",
    "decode_record",
    "decode_records",
    "encode_record",
    "group_bits",
    "rate_moments_change",
    "round_to_float32",
    "summarise_groups",
]
