"""Fixtures for the client's tests: the real service app, in-process and on a real port.

In-process apps run their lifespan (TestClient / an ASGITransport inside the
lifespan context), so the store and kernels are set up as in production. The
live server is uvicorn on a free port in a thread, on the memory store; its
store is kept across stop/start so that an outage and restart of the HTTP
service can be checked for exactly-once counting.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from knapsack_client import AsyncKnapsackClient, KnapsackClient, RetryPolicy
from knapsack_service.main import create_app
from knapsack_service.settings import Settings
from knapsack_service.store import MemoryStore

TOKEN = "client-test-token"
SCOPED_TOKEN = "scoped-token"
#: How long a live server may take to start and compile its kernels (cold numba cache).
STARTUP_SECONDS = 180
#: Retries that do not wait: the tests check what is retried, not how long.
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, max_retry_after=0.0)


def make_settings(**overrides: object) -> Settings:
    """Settings independent of the environment's KRL_ variables (memory store)."""
    base: dict[str, object] = {"redis_url": None, "api_tokens": "", "log_level": "warning"}
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_client_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client reads KRL_URL / KRL_TOKEN: a developer's shell must not steer the tests."""
    monkeypatch.delenv("KRL_URL", raising=False)
    monkeypatch.delenv("KRL_TOKEN", raising=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def run_id() -> str:
    return f"client-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- in-process


@pytest.fixture
def app_http() -> Iterator[TestClient]:
    """The real app, lifespan entered, behind an httpx.Client (TestClient)."""
    with TestClient(create_app(make_settings())) as http:
        yield http


@pytest.fixture
def client(app_http: TestClient) -> Iterator[KnapsackClient]:
    with KnapsackClient(http_client=app_http, retry=NO_WAIT) as knapsack:
        yield knapsack


@pytest.fixture
def authed_http() -> Iterator[TestClient]:
    """The real app with tokens: TOKEN for every run, SCOPED_TOKEN for runs `team-*`."""
    settings = make_settings(api_tokens=f"{TOKEN},{SCOPED_TOKEN}=team-*")
    with TestClient(create_app(settings)) as http:
        yield http


async def _asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://krl") as http:
            yield http


@pytest.fixture
async def async_app_http() -> AsyncIterator[httpx.AsyncClient]:
    """The real app, lifespan entered, behind an httpx.AsyncClient on an ASGITransport."""
    async for http in _asgi_client(create_app(make_settings())):
        yield http


@pytest.fixture
async def async_client(async_app_http: httpx.AsyncClient) -> AsyncIterator[AsyncKnapsackClient]:
    async with AsyncKnapsackClient(http_client=async_app_http, retry=NO_WAIT) as knapsack:
        yield knapsack


@pytest.fixture
async def async_authed_http() -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(api_tokens=f"{TOKEN},{SCOPED_TOKEN}=team-*")
    async for http in _asgi_client(create_app(settings)):
        yield http


# --------------------------------------------------------------------------- live server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _DurableMemoryStore(MemoryStore):
    """The memory store, kept open across server restarts (state survives, as with Redis)."""

    async def close(self) -> None:
        return None


class LiveServer:
    """uvicorn serving the real app on 127.0.0.1:<port>, stoppable and restartable."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.store = _DurableMemoryStore()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app = create_app(make_settings(), store=self.store)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        # Wait for the kernels too: a server stopped while they still compile
        # would wait for the compiling thread before it exits.
        while httpx.get(self.url + "/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._server = None
        self._thread = None


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    server = LiveServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens (connection refused at once)."""
    return f"http://127.0.0.1:{free_port()}"
