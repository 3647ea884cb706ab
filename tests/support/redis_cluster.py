"""A real 3-master Redis Cluster on loopback ports in temporary directories.

Each node is a `RedisServer` in cluster mode; `redis-cli --cluster create` splits the
16384 slots between them, then the helper waits until every node reports
`cluster_state:ok`. Every node gets an explicit cluster bus port (`--cluster-port`)
because the default, port + 10000, may be taken or above 65535 for a free port from
the ephemeral range.

```python
with LocalRedisCluster() as cluster:
    store = create_store(cluster.url)          # redis+cluster://127.0.0.1:<p1>,...
    cluster.master_port_for_key("krl:{run}:cfg")
```
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from tests.support.processes import ManagedProcess
from tests.support.redis_server import RedisServer, find_free_port

REDIS_CLI = shutil.which("redis-cli") or "redis-cli"
READY_TIMEOUT = 20.0
#: Seconds a master may be unreachable before the others mark it failed.
NODE_TIMEOUT_MS = 2000


class LocalRedisCluster(ManagedProcess):
    """Three cluster-mode redis-server processes joined into one cluster, no replicas.

    Args:
        masters: Number of master nodes (at least 3, as redis-cli requires).
    """

    def __init__(self, masters: int = 3) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.nodes = [self._node() for _ in range(masters)]

    @staticmethod
    def _node() -> RedisServer:
        return RedisServer(
            extra_args=(
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(find_free_port()),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            )
        )  # fmt: skip

    @property
    def ports(self) -> list[int]:
        """Client ports of the masters."""
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """`redis+cluster://` URL naming every master as a seed node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def seed_url(self) -> str:
        """Plain `redis://` URL of the first master (for KRL_REDIS_CLUSTER=true)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> LocalRedisCluster:
        """Start the nodes, create the cluster and wait until every node says ok."""
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    REDIS_CLI,
                    "--cluster", "create",
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    "--cluster-replicas", "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=READY_TIMEOUT,
            )  # fmt: skip
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until `CLUSTER INFO` reports `cluster_state:ok` on every node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._state_ok(port) for port in self.ports):
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster not ok within {timeout} s on ports {self.ports}")

    @staticmethod
    def _state_ok(port: int) -> bool:
        try:
            with redis.Redis(port=port, socket_timeout=1.0) as client:
                info = client.execute_command("CLUSTER INFO")
        except redis.RedisError:
            return False
        # redis-py parses the reply into a dict; older versions return the text.
        if isinstance(info, dict):
            return info.get("cluster_state") == "ok"
        return "cluster_state:ok" in (info.decode() if isinstance(info, bytes) else str(info))

    def master_port_for_key(self, key: str) -> int:
        """Client port of the master that owns `key`'s hash slot."""
        slot = key_slot(key.encode("utf-8", "surrogatepass"))
        with redis.Redis(port=self.ports[0], socket_timeout=1.0) as client:
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise RuntimeError(f"slot {slot} is not covered")

    def keys_by_port(self) -> dict[int, list[bytes]]:
        """Every key stored on each master (the cluster must be small: uses KEYS)."""
        result = {}
        for port in self.ports:
            with redis.Redis(port=port, socket_timeout=1.0) as client:
                result[port] = sorted(client.keys("*"))
        return result

    def flush(self) -> None:
        """Empty every master (data and script cache)."""
        for port in self.ports:
            with redis.Redis(port=port, socket_timeout=1.0) as client:
                client.flushall()
                client.script_flush()

    def close(self) -> None:
        """Stop every node and remove its directory."""
        for node in self.nodes:
            node.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """One 3-master cluster per importing test module's session (import it into a module)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("redis-server/redis-cli are not installed (apt-get install redis-server)")
    with LocalRedisCluster() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: LocalRedisCluster) -> str:
    """`redis+cluster://` URL of the session's cluster, emptied for this test."""
    redis_cluster.flush()
    return redis_cluster.url


__all__ = ["LocalRedisCluster", "redis_cluster", "redis_cluster_url"]
