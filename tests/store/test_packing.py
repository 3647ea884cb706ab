"""`LinearPackConnection` writes exactly the bytes redis-py's own packer writes.

The workaround for redis/redis-py#4176 (asyncio connections pack in Python) must
never change what goes on the wire: the slow path (redis-py's encoder, then hiredis)
and the fast path (bytes, str and int handed to hiredis whole) are both checked
against redis-py, errors included; and it is used only while redis-py needs it.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Connection

from knapsack_service.store import redis_client
from knapsack_service.store.redis_client import LinearPackConnection, build_client

CASES = [
    ("HMGET", "krl:{r}:p", *[f"prompt-{i}" for i in range(40)]),
    ("EVALSHA", "abc", "3", "k1", "k2", "k3", *["ünïcødé", b"\x00\xff", 7, 2.5] * 5),
    ("CLIENT SETNAME", "x", *["{odd}:*\n\"quote'"] * 20),
    ("GET", "short"),  # below the threshold: redis-py packs it
    ("EVALSHA", "abc", 6, *[b"k"] * 6, *[b"\xed\xb0\x80", "3", "", "ünï", 0, -7, 2**70] * 4),
    ("HMGET", b"key", *["x"] * 15, True),  # a bool: the encoder's own path (and error)
    ("HMGET", b"key", *["x"] * 15, 0.1),  # a float: the encoder's own text
]
IDS = ["hmget", "mixed-slow", "two-word-command", "short", "mixed-fast", "bool", "float"]


@pytest.mark.parametrize("args", CASES, ids=IDS)
def test_packed_bytes_match_redis_py_or_raise_alike(args: tuple) -> None:
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


@pytest.mark.parametrize("needed", [True, False])
def test_the_workaround_is_used_only_while_redis_py_packs_in_python(
    needed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_client, "ASYNC_PACKER_IS_PYTHON", needed)
    client = build_client("redis://127.0.0.1:1/0")
    expected = LinearPackConnection if needed else Connection
    assert client.connection_pool.connection_class is expected
    # TLS and Unix sockets keep the connection class their URL selects.
    assert build_client("rediss://127.0.0.1:1/0").connection_pool.connection_class is not (
        LinearPackConnection
    )


def test_the_installed_redis_py_still_needs_it() -> None:
    # Fails once redis-py's asyncio connection packs with hiredis (redis/redis-py#4176
    # fixed): then delete LinearPackConnection rather than keep dead code.
    assert redis_client.ASYNC_PACKER_IS_PYTHON, (
        f"redis-py {redis_client.REDIS_PY_VERSION} packs asyncio commands with hiredis; "
        "remove LinearPackConnection"
    )
