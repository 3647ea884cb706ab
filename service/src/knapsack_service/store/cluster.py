"""Redis Cluster URLs and the `redis.asyncio.RedisCluster` client the store runs on.

A cluster is chosen by the URL scheme (`redis+cluster://`, `rediss+cluster://` for
TLS) or by `KRL_REDIS_CLUSTER=true` with a plain `redis://` URL. Either form may name
several seed nodes separated by commas, so the service still starts when one seed is
down:

    redis+cluster://[user:password@]host1:6379,host2:6379,host3:6379

The client discovers the other nodes and the slot map from any seed. Nothing else
changes for the store: every key of a run carries the run's hash tag (`keys.py`), so
each script and each pipeline of a run's keys goes to the one master that owns the
run's slot; only `krl:runs` lives elsewhere, and it is always touched by a command of
its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

#: URL schemes that select a Redis Cluster, and the plain scheme each maps to.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_PLAIN_SCHEMES = frozenset(CLUSTER_SCHEMES.values())
_DEFAULT_PORT = 6379


def is_cluster_url(url: str) -> bool:
    """True if `url`'s scheme selects a Redis Cluster (`redis+cluster://`, ...)."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


@dataclass(frozen=True)
class ClusterUrl:
    """A cluster URL split for redis-py.

    Attributes:
        url: A plain `redis://` or `rediss://` URL of the first seed (credentials,
            database 0 and query options kept), for `RedisCluster.from_url`.
        seeds: (host, port) of every seed node, the first included.

    """

    url: str
    seeds: tuple[tuple[str, int], ...]


def parse_cluster_url(url: str) -> ClusterUrl:
    """Split a (possibly multi-seed) cluster URL.

    Raises:
        ValueError: Unknown scheme, no host, a bad port, or a database other than 0
            (a cluster only has database 0).

    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    plain = CLUSTER_SCHEMES.get(scheme, scheme)
    if not sep or plain not in _PLAIN_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (redis+cluster://host:port): {url!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    seeds = tuple(_host_port(host, url) for host in hosts.split(","))
    database = urlsplit(f"{plain}://x{tail}").path.strip("/")
    if database not in ("", "0"):
        raise ValueError(f"a Redis Cluster only has database 0, got {database!r} in {url!r}")
    first = hosts.split(",")[0]
    return ClusterUrl(url=f"{plain}://{userinfo}{at}{first}{tail}", seeds=seeds)


def _host_port(text: str, url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(f"redis://{text}")
        host, port = parts.hostname, parts.port
    except ValueError as error:
        raise ValueError(f"bad seed {text!r} in {url!r}: {error}") from error
    if not host:
        raise ValueError(f"a seed node without host in {url!r}")
    return host, port or _DEFAULT_PORT


def build_cluster_client(
    url: str, timeout: float, max_connections: int = 100
) -> aioredis.RedisCluster:
    """A `redis.asyncio.RedisCluster` configured like the standalone client.

    `max_connections` is per node. redis-py's cluster pool cannot wait for a free
    connection (it raises `MaxConnectionsError` at once), so it is sized from the
    concurrency limit (`redis_store.pool_size_for`): a request holds one connection
    at a time, so no request within the limit ever finds the node's pool full.

    The same socket timeouts bound every connect and reply. One retry on a
    connection error, timeout or CLUSTERDOWN reloads the slot map first, so a command
    that hit a master just replaced by its replica goes to the new master; MOVED and
    ASK redirections (resharding) are followed by redis-py without counting as
    retries. Anything still failing surfaces as `StoreUnavailable` quickly.
    """
    parsed = parse_cluster_url(url)
    return aioredis.RedisCluster.from_url(
        parsed.url,
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.seeds[1:]],
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        max_connections=int(max_connections),
        retry=Retry(
            ExponentialBackoff(cap=min(timeout, 0.05), base=0.01),
            retries=1,
            supported_errors=(rex.ConnectionError, rex.TimeoutError, rex.ClusterDownError),
        ),
        decode_responses=False,
    )


__all__ = [
    "CLUSTER_SCHEMES",
    "ClusterUrl",
    "build_cluster_client",
    "is_cluster_url",
    "parse_cluster_url",
]
