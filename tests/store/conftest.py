"""Fixtures for the store tests: the same body runs on the memory store and on Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from knapsack_service.store import MemoryStore, RedisStore, Store

T = TypeVar("T")
StoreRunner = Callable[[Callable[[Store], Awaitable[T]]], T]


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def run_with_store(store_kind: str, request: pytest.FixtureRequest) -> StoreRunner:
    """Run `body(store)` in a fresh event loop on a fresh store of the parametrised kind.

    redis-py connections belong to the loop that opened them, so the store is built
    inside the loop the test body runs in.
    """
    url = request.getfixturevalue("redis_url") if store_kind == "redis" else None
    return store_runner(lambda: RedisStore.from_url(url) if url else MemoryStore())


def store_runner(make_store: Callable[[], Store]) -> StoreRunner:
    """`run(body)`: build a store inside a fresh event loop, run `body(store)`, close it."""

    def run(body: Callable[[Store], Awaitable[T]]) -> T:
        async def main() -> T:
            store = make_store()
            try:
                return await body(store)
            finally:
                await store.close()

        return asyncio.run(main())

    return run
