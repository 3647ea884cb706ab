"""Fixtures for the service's HTTP tests: apps on the memory store and on real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from knapsack_service.main import create_app
from knapsack_service.settings import Settings


def make_settings(**overrides: object) -> Settings:
    """Settings for a test app, independent of the environment's KRL_ variables."""
    # A generous Redis timeout: on a busy CI machine (or while numba compiles in the
    # background) a 0.5 s reply deadline turns a slow answer into a spurious 503.
    # Outage tests set a short one explicitly.
    base: dict[str, object] = {
        "redis_url": None,
        "api_tokens": "",
        "max_prompts": 100_000,
        "redis_timeout": 5.0,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def memory_app_client() -> Iterator[TestClient]:
    """An app on the embedded memory store, lifespan entered."""
    with TestClient(create_app(make_settings())) as client:
        yield client


@pytest.fixture(params=["memory", "redis"])
def app_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The same app on each store: the memory store and a real redis-server."""
    if request.param == "memory":
        settings = make_settings()
    else:
        settings = make_settings(redis_url=request.getfixturevalue("redis_url"))
    with TestClient(create_app(settings)) as client:
        yield client
