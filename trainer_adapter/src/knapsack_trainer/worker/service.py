"""Connect the worker to a knapsack-rl service: a URL, or one embedded in-process.

The worker only ever talks to the service through `knapsack_client.KnapsackClient`,
exactly as an outside verl/TRL/OpenRLHF loop would. The embedded mode
(`knapsack_trainer.embedded`) runs the service in this process, so a single command
trains with knapsack allocation and no server to start; it needs the `[service]` extra
and a single process (each rank would otherwise hold its own statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from knapsack_client import KnapsackClient
from knapsack_trainer.embedded import embedded_client


@contextlib.contextmanager
def connect_service(
    url: str | None,
    token: str | None = None,
    *,
    journal_path: str | Path | None = None,
    world_size: int = 1,
) -> Iterator[KnapsackClient]:
    """Yield a client of the service at `url`, or of an embedded service when None.

    Args:
        url: Service base URL, or None for the embedded in-process service.
        token: Bearer token (None reads `KRL_TOKEN`).
        journal_path: The client's report journal (reports survive outages).
        world_size: Ranks in the job; the embedded service needs exactly one.

    Raises:
        ValueError: If the embedded service is asked for with several ranks.

    """
    if url is not None:
        with KnapsackClient(url, token, journal_path=journal_path) as client:
            yield client
        return
    if world_size > 1:
        raise ValueError("the embedded service serves one process: set service_url")
    with embedded_client(token=token, journal_path=journal_path) as client:
        yield client
