"""One plan per step: every rank, retry and replay of a step gets the same answer.

An allocation is deterministic but not idempotent: it reads statistics that outcome
reports keep changing, so a rank that asks after another rank's report (or a retry,
or a trainer restarted to replay a step) would get a different answer for the same
step, and the groups of the step would silently disagree across ranks. So the first
answer for a step is kept in the store and served again, byte for byte (shards,
estimates and `solve_seconds` included), to every later call with the same request.

The plan key is (step, the prompt list): the same prompts in the same order name
the same plan. The same prompts with any other field different (budget, workers,
min_n, ...) are a conflict (409 `plan_conflict`): two ranks disagree about the
step, which no answer can fix. A different prompt list for the same step is another
plan: independent trainers sharing a run each draw their own batch per step.

Stored bytes: `PLAN_FORMAT`, the SHA-256 of the whole request (its canonical JSON,
defaults included), then the answer's JSON compressed with zlib.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass

from knapsack_client import AllocationRequest
from knapsack_service.store import Store

#: Version tag at the start of every stored plan.
PLAN_FORMAT = b"KRP1"
#: Response header saying whether this call made the step's plan or got a kept one.
PLAN_HEADER = "Knapsack-Plan"
#: zlib level: an answer of 1,024 prompts compresses about tenfold at level 1 already.
_ZLIB_LEVEL = 1
_DIGEST_BYTES = 32


@dataclass(frozen=True)
class PlanIdentity:
    """Where a request's plan is kept, and what it must match there.

    Attributes:
        key: `<step>:<SHA-256 of the prompt list, hex>`, the store's plan key.
        request_digest: SHA-256 of the whole request's canonical JSON.

    """

    key: str
    request_digest: bytes


@dataclass(frozen=True)
class KeptPlan:
    """The answer to serve: this call's (created) or the step's earlier one."""

    created: bool
    body: bytes


def identify(request: AllocationRequest) -> PlanIdentity:
    """The plan key and request digest of an allocation request."""
    # json.dumps escapes every non-ASCII character (lone surrogates too) and quotes
    # each id, so the text is unambiguous for any list of strings.
    prompts = hashlib.sha256(json.dumps(request.prompts).encode("ascii")).hexdigest()
    body = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return PlanIdentity(
        key=f"{int(request.step)}:{prompts}",
        request_digest=hashlib.sha256(body.encode("ascii")).digest(),
    )


def encode_plan(identity: PlanIdentity, body: bytes) -> bytes:
    """The stored form of an answer's JSON."""
    return PLAN_FORMAT + identity.request_digest + zlib.compress(body, _ZLIB_LEVEL)


def decode_plan(blob: bytes) -> tuple[bytes, bytes]:
    """(request digest, answer JSON) of a stored plan."""
    head = len(PLAN_FORMAT)
    if blob[:head] != PLAN_FORMAT:
        raise ValueError(f"not a stored plan (starts with {blob[:head]!r})")
    digest = blob[head : head + _DIGEST_BYTES]
    return digest, zlib.decompress(blob[head + _DIGEST_BYTES :])


class PlanConflict(Exception):
    """The step's prompts were planned under different request fields (the API: 409)."""

    def __init__(self, step: int) -> None:
        super().__init__(
            f"step {step} was already planned for these prompts with other request fields"
            " (budget, workers, min_n, max_n, strategy or split_groups); every rank must send"
            " the same request for a step. A new plan needs a new run or another step."
        )
        self.step = step


def plan_conflict(step: int) -> PlanConflict:
    """The domain error for a step planned under other request fields."""
    return PlanConflict(step)


async def keep_plan(store: Store, run_id: str, request: AllocationRequest, body: bytes) -> KeptPlan:
    """Keep `body` (the answer's JSON) as the step's plan, or return the plan kept before.

    Raises `PlanConflict` (409) when the step's prompts were planned for a different
    request; store errors (`RunNotFound`, `StoreUnavailable`) pass through.
    """
    identity = identify(request)
    claim = await store.claim_plan(run_id, identity.key, encode_plan(identity, body))
    if claim.created:
        return KeptPlan(created=True, body=body)
    digest, kept_body = decode_plan(claim.plan)
    if digest != identity.request_digest:
        raise plan_conflict(request.step)
    return KeptPlan(created=False, body=kept_body)


__all__ = [
    "PLAN_FORMAT",
    "PLAN_HEADER",
    "KeptPlan",
    "PlanConflict",
    "PlanIdentity",
    "decode_plan",
    "encode_plan",
    "identify",
    "keep_plan",
    "plan_conflict",
]
