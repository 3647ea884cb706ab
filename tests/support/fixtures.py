"""Pytest fixtures around a real redis-server; import them into a folder's conftest.py.

```python
from tests.support.fixtures import redis_server, redis_url  # noqa: F401
```
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import redis

from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session (no persistence)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server, emptied (FLUSHALL) for this test.

    A test that killed or paused the server leaves it running again for the next.
    """
    redis_server.resume()
    if not redis_server.running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
        client.script_flush()
    return redis_server.url
