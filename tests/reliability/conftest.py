"""Fixtures of the reliability tests: a live service over real HTTP and real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from tests.support.fixtures import redis_server, redis_url  # noqa: F401
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess

ServiceFactory = Callable[..., ServiceProcess]


def flush(server: RedisServer) -> None:
    """Empty the redis-server so a module starts from nothing."""
    server.resume()
    if not server.running:
        server.start()
    with redis.Redis.from_url(server.url) as client:
        client.flushall()


@pytest.fixture
def start_service() -> Iterator[ServiceFactory]:
    """Start `knapsack-service serve` processes with given `KRL_` settings; stop them after."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str] | None = None, *, workers: int = 1) -> ServiceProcess:
        service = ServiceProcess(env, workers=workers)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.close()
