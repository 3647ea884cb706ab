"""The packer's fast path (bytes, str and int handed to hiredis whole) writes redis-py's bytes."""

from __future__ import annotations

import pytest
from redis.asyncio import Connection

from knapsack_service.store.redis_store import LinearPackConnection

FAST_CASES = [
    ("EVALSHA", "abc", 6, *[b"k"] * 6, *[b"\xed\xb0\x80", "3", "", "ünï", 0, -7, 2**70] * 4),
    ("HMGET", b"key", *["x"] * 15, True),  # a bool: the encoder's own path (and error)
    ("HMGET", b"key", *["x"] * 15, 0.1),  # a float: the encoder's own text
]


@pytest.mark.parametrize("args", FAST_CASES, ids=["mixed", "bool", "float"])
def test_fast_path_matches_redis_py_or_raises_alike(args: tuple) -> None:
    try:
        theirs = b"".join(Connection().pack_command(*args))
    except Exception as error:
        with pytest.raises(type(error)):
            LinearPackConnection().pack_command(*args)
        return
    assert b"".join(LinearPackConnection().pack_command(*args)) == theirs


def test_unencodable_str_raises_the_encoders_error() -> None:
    args = ("HMGET", b"key", *["x"] * 15, "\udc80")
    with pytest.raises(UnicodeEncodeError):
        Connection().pack_command(*args)
    with pytest.raises(UnicodeEncodeError):
        LinearPackConnection().pack_command(*args)
