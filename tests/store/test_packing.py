"""The store's C command packer writes exactly the bytes redis-py's own packer writes."""

from __future__ import annotations

import pytest
from redis.asyncio import Connection

from knapsack_service.store.redis_store import LinearPackConnection

CASES = [
    ("HMGET", "krl:{r}:p", *[f"prompt-{i}" for i in range(40)]),
    ("EVALSHA", "abc", "3", "k1", "k2", "k3", *["ünïcødé", b"\x00\xff", 7, 2.5] * 5),
    ("CLIENT SETNAME", "x", *["{odd}:*\n\"quote'"] * 20),
    ("GET", "short"),  # below the threshold: redis-py packs it
]


@pytest.mark.parametrize("args", CASES, ids=[case[0] for case in CASES])
def test_packed_bytes_match_redis_py(args: tuple) -> None:
    ours = b"".join(LinearPackConnection().pack_command(*args))
    theirs = b"".join(Connection().pack_command(*args))
    assert ours == theirs
