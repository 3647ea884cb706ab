"""A DELETE that lands between two store calls of one request: 404 or a consistent answer.

Issue 12, item 4: DELETE racing allocate, GET, PUT or summary answered 500 (the second
store call raised `RunNotFound` and only `StoreUnavailable` was handled). Here the race
is made deterministic instead of hoped for: the store is a real one (memory, or a real
redis-server) whose k-th call of the request is preceded by the run's DELETE, for every
k the request makes, so every interleaving of "DELETE between two calls" is tried.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from knapsack_service.main import create_app
from knapsack_service.store import MemoryStore, RedisStore
from tests.service.conftest import make_settings

#: Store calls a request may make; the race may land before any of them.
RACED_CALLS = (
    "put_settings",
    "get_settings",
    "read_batch",
    "apply_report",
    "record_allocation",
    "read_counters",
    "read_summary",
)


class DeleteLands:
    """Mixin for a real store: the run is deleted right before call number `at`."""

    at: int | None = None
    calls: int = 0

    def arm(self, at: int | None) -> None:
        self.at, self.calls = at, 0

    async def _maybe_delete(self, run_id: str) -> None:
        self.calls += 1
        if self.calls == self.at:
            await self.delete_run(run_id)  # type: ignore[attr-defined]


def _raced(name: str) -> Any:
    async def call(self: Any, run_id: str, *args: Any, **kwargs: Any) -> Any:
        await self._maybe_delete(run_id)
        return await getattr(super(type(self), self), name)(run_id, *args, **kwargs)

    call.__name__ = name
    return call


RacedMemoryStore = type(
    "RacedMemoryStore", (DeleteLands, MemoryStore), {n: _raced(n) for n in RACED_CALLS}
)
RacedRedisStore = type(
    "RacedRedisStore", (DeleteLands, RedisStore), {n: _raced(n) for n in RACED_CALLS}
)

REQUESTS: list[tuple[str, str, Any]] = [
    ("PUT", "", {"max_n": 32}),
    ("GET", "", None),
    ("GET", "/summary", None),
    ("POST", "/allocations", {"step": 3, "prompts": ["a", "b"], "budget": 16}),
    ("POST", "/prompts/lookup", {"prompt_ids": ["a", "b"]}),
    (
        "POST",
        "/outcomes",
        {
            "report_id": "late",
            "step": 3,
            "results": [{"prompt_id": "a", "successes": 1, "trials": 4}],
        },
    ),
]


@pytest.fixture(params=["memory", "redis"])
def raced(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return RacedMemoryStore()
    return RacedRedisStore.from_url(request.getfixturevalue("redis_url"), timeout=5.0)


@pytest.mark.parametrize(
    ("method", "suffix", "body"), REQUESTS, ids=[f"{m} {s}" for m, s, _ in REQUESTS]
)
def test_a_delete_between_store_calls_answers_404_or_a_consistent_view(
    raced: Any, method: str, suffix: str, body: Any
) -> None:
    with TestClient(create_app(make_settings(), store=raced)) as client:
        for at in range(1, 5):  # before the 1st, 2nd, 3rd, 4th store call of the request
            raced.arm(None)
            client.put("/v1/runs/r", json={})
            seed = {
                "report_id": f"s{at}",
                "step": 0,
                "results": [{"prompt_id": "a", "successes": 2, "trials": 4}],
            }
            assert client.post("/v1/runs/r/outcomes", json=seed).status_code == 200
            raced.arm(at)
            response = client.request(method, f"/v1/runs/r{suffix}", json=body)
            raced.arm(None)
            assert response.status_code in (200, 201, 404), (at, response.text)
            if response.status_code == 404:
                assert response.json()["error"]["code"] == "run_not_found"
            elif method == "GET" and suffix == "":
                assert response.json()["settings"]["max_n"] == 128
