"""The memory store lives in one process: several workers are refused at start-up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from knapsack_service.settings import Settings


def test_settings_refuse_several_workers_without_redis() -> None:
    with pytest.raises(ValidationError, match="KRL_REDIS_URL"):
        Settings(workers=2, redis_url=None)
    assert Settings(workers=2, redis_url="redis://127.0.0.1:6379/0").workers == 2


def test_serve_with_two_workers_on_the_memory_store_exits_with_the_reason() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KRL_")}
    done = subprocess.run(
        [sys.executable, "-m", "knapsack_service.cli", "serve", "--workers", "2", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "memory store" in done.stderr and "KRL_REDIS_URL" in done.stderr
