"""The knapsack-rl service embedded in this process, reached through the real client.

The demo, the simulator and the worker's single-process mode run the service's
FastAPI app on its memory store inside the calling process, wrapped in
`fastapi.testclient.TestClient` (an `httpx.Client`), and talk to it only through
`knapsack_client.KnapsackClient`, exactly as a trainer talks to a remote service. It
needs the `[service]` extra.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from knapsack_client import KnapsackClient

#: Seconds to wait for `/readyz` (a cold numba cache compiles the kernels first).
READY_TIMEOUT_SECONDS = 300.0


@contextmanager
def embedded_client(
    *, token: str | None = None, journal_path: str | Path | None = None, **settings: Any
) -> Iterator[KnapsackClient]:
    """A client of a service started in this process on the memory store.

    The service's lifespan runs (store opened, kernels compiled) for the duration of
    the block. Keyword arguments go to the service's `Settings` (e.g. `max_prompts`);
    the Redis URL is always unset and, unless given, no tokens are required.
    """
    with warnings.catch_warnings():
        # Starlette 1.x asks for `httpx2` under its test client; plain httpx works.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from knapsack_service.main import create_app
    from knapsack_service.settings import Settings

    settings.setdefault("api_tokens", ())
    app = create_app(Settings(redis_url=None, **settings))
    with TestClient(app, base_url="http://krl") as http:
        wait_until_ready(http)
        with KnapsackClient(
            base_url="http://krl", token=token or "", journal_path=journal_path, http_client=http
        ) as client:
            yield client


def wait_until_ready(http: Any, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Block until `/readyz` answers 200 (kernels compiled or loaded from cache).

    Allocations would work before (the first one compiles), but a service shut down
    while its warm-up still runs is an avoidable race for short runs.
    """
    deadline = time.monotonic() + timeout
    while http.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the embedded service was not ready after {timeout:.0f} s")
        time.sleep(0.02)
