"""Fixtures of the simulator tests: a clean environment and a live service on Redis."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from knapsack_service.main import create_app
from knapsack_service.settings import Settings

STARTUP_SECONDS = 60.0


@pytest.fixture(autouse=True)
def _no_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment meant for a real deployment must not reach the embedded service."""
    for name in list(os.environ):
        if name.startswith("KRL_"):
            monkeypatch.delenv(name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_service_url(redis_url: str) -> Iterator[str]:
    """The real app behind uvicorn on a free port, storing in the test's redis-server."""
    port = _free_port()
    app = create_app(Settings(redis_url=redis_url, log_level="warning"))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while True:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the service did not become ready")
            try:
                if server.started and httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
