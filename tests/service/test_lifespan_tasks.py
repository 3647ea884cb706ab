"""The app's lifespan leaves no task of its own behind when it exits.

Its health watcher was only cancelled, not awaited; a cancellation that Python 3.11's
`wait_for` swallowed (CPython gh-86296) left it running, and whoever closed the event
loop next then hung (tests/client/test_async_client.py, about one run in four).
"""

from __future__ import annotations

import asyncio

import pytest

from knapsack_service.main import create_app
from tests.client.conftest import make_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_no_lifespan_task_outlives_the_lifespan() -> None:
    for _ in range(3):
        app = create_app(make_settings())
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0.01)
        ours = [
            task
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task() and "watch_health" in repr(task.get_coro())
        ]
        assert ours == [], ours
