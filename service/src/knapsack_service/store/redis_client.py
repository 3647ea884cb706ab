"""The standalone Redis client of the store: a blocking pool and a linear packer.

Two redis-py defaults do not fit the service, and this module holds the fix of each:

- The asyncio pool holds 100 connections and raises `MaxConnectionsError` at once
  when full, which the store would report as an outage on a healthy Redis: the
  pool here blocks for a bounded time and is sized from `KRL_MAX_CONCURRENCY`.
- The asyncio `Connection` packs commands in Python, re-joining its buffer once per
  argument (quadratic up to its 6 kB cutoff); the sync `Connection` uses hiredis'
  `pack_command` since redis-py 4.5 (PR #2570), the asyncio one does not:
  redis/redis-py#4176 ("Async Redis cannot use hiredis pack_command", open as of
  redis-py 8.1). Measured: HMGET of 1,024 ids, 2.53 ms packed by redis-py, 0.34 ms
  with `LinearPackConnection`. It is used only while redis-py still lacks the fix
  (`ASYNC_PACKER_IS_PYTHON`), so an upgrade that fixes it drops the workaround.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

try:  # hiredis comes with redis[hiredis]; without it redis-py's packer is used
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover
    _hiredis_pack = None

#: redis-py's asyncio connections still pack commands in Python (redis/redis-py#4176):
#: the sync `Connection` gained `_construct_command_packer` with its hiredis packer,
#: the asyncio one has none up to 8.1 (the version this was measured on).
ASYNC_PACKER_IS_PYTHON = not hasattr(aioredis.Connection, "_construct_command_packer")
REDIS_PY_VERSION = redis.__version__

#: Socket connect and read timeout in seconds (the service passes KRL_REDIS_TIMEOUT).
DEFAULT_TIMEOUT = 0.5
#: Connections per client when the caller does not size the pool (KRL_MAX_CONCURRENCY's
#: default plus `POOL_HEADROOM`).
DEFAULT_MAX_CONNECTIONS = 256 + 16
#: Connections beyond the request limit: probes, scrapes and the health loop are never
#: shed by the concurrency limit, so they need connections of their own.
POOL_HEADROOM = 16


def pool_size_for(max_concurrency: int) -> int:
    """Connections a client needs so that no request within the limit waits for one.

    A request holds at most one connection at a time (its store calls are sequential),
    so the limit plus the never-shed routes' headroom is enough; the pool still blocks
    (for at most the socket timeout) instead of failing should that ever be exceeded.
    """
    return int(max_concurrency) + POOL_HEADROOM


#: Argument types hiredis packs exactly as redis-py's encoder does (see `pack_command`):
#: exact types only (bool is refused by the encoder, floats are written differently).
_PLAIN_ARGUMENT_TYPES = frozenset((bytes, str, int))


class LinearPackConnection(aioredis.Connection):
    """A plain TCP connection whose command packing is linear in the arguments.

    redis-py's asyncio `pack_command` re-joins its growing buffer once per argument
    (quadratic up to its 6 kB cutoff) in Python: about 0.7 ms for the 1,024 prompt
    ids of one batch read, and more for a report's 5 arguments per group. hiredis
    (a declared dependency) packs the same bytes in C; anything it refuses goes
    through redis-py's own packer, so the bytes on the wire never change. Upstream:
    redis/redis-py#4176 (see the module docstring).
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        """The command's RESP bytes: hiredis for 16 arguments or more, else redis-py."""
        if len(args) < 16 or _hiredis_pack is None:
            return super().pack_command(*args)
        first = args[0]
        if isinstance(first, str):
            args = tuple(first.encode().split()) + args[1:]
        elif b" " in first:
            args = tuple(first.split()) + args[1:]
        encoder = self.encoder
        if (
            _PLAIN_ARGUMENT_TYPES.issuperset(map(type, args))
            and encoder.encoding.lower().replace("-", "") == "utf8"
            and encoder.encoding_errors == "strict"
        ):
            # Only bytes, str and int: hiredis writes str as strict UTF-8 and int as
            # its decimal text, as the encoder would, and the per-argument Python call
            # (most of the cost of a report's 1,285 arguments) is skipped. A str it
            # cannot encode falls through, so the encoder raises its own error.
            with contextlib.suppress(UnicodeEncodeError):
                return [_hiredis_pack(args)]
        encode = encoder.encode
        try:
            return [_hiredis_pack(tuple(map(encode, args)))]
        except TypeError:  # e.g. a memoryview argument
            return super().pack_command(*args)


def build_client(
    url: str, timeout: float = DEFAULT_TIMEOUT, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> aioredis.Redis:
    """A `redis.asyncio.Redis` configured for the store.

    The pool is a `BlockingConnectionPool` of `max_connections`: redis-py's default
    pool holds 100 connections and raises `MaxConnectionsError` the moment a 101st
    request needs one, which reads as an outage (a degraded allocation, a 503) on a
    perfectly healthy Redis. Sized from the concurrency limit, a request within the
    limit never waits; beyond it, a request waits for a free connection for at most
    `timeout` before it counts as unavailable.

    Timeouts bound every connect and every reply, so an outage surfaces as
    `StoreUnavailable` within about `timeout` instead of hanging a request. One retry
    on a connection error (not on a timeout) lets the first command after a Redis
    restart go through on a fresh connection; redis-py drops a broken connection from
    its pool and reconnects on the next command by itself, so no new client is
    needed once Redis is back.
    """
    # Only plain redis:// gets the faster packer: a connection_class argument would
    # replace the SSL or Unix-socket class that rediss:// and unix:// URLs select.
    linear = ASYNC_PACKER_IS_PYTHON and url.startswith("redis://")
    fast = {"connection_class": LinearPackConnection} if linear else {}
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        **fast,
        max_connections=int(max_connections),
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(
            ExponentialBackoff(cap=min(timeout, 0.05), base=0.01),
            retries=1,
            supported_errors=(rex.ConnectionError,),
        ),
        decode_responses=False,
    )
    return aioredis.Redis.from_pool(pool)


__all__ = [
    "ASYNC_PACKER_IS_PYTHON",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "POOL_HEADROOM",
    "LinearPackConnection",
    "build_client",
    "pool_size_for",
]
