"""Fixtures of the worker tests: a tiny local model and an in-process service."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama-style model and tokenizer, saved once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from knapsack_trainer.worker.tasks import build_task
    from knapsack_trainer.worker.tiny_model import build_tiny_model

    words = build_task("target").vocabulary()
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), words=words, seed=0)


@pytest.fixture
def vllm_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In-process vLLM engine (fast start) with its socket files in a temp folder."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    return tmp_path


@pytest.fixture
def service_client() -> Iterator[object]:
    """A KnapsackClient of a real in-process service on its memory store."""
    from fastapi.testclient import TestClient

    from knapsack_client import KnapsackClient
    from knapsack_service.main import create_app
    from knapsack_service.settings import Settings

    app = create_app(Settings(redis_url=None, api_tokens=()))
    with TestClient(app) as http, KnapsackClient(token="", http_client=http) as client:
        yield client


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def service_url() -> Iterator[str]:
    """The service on a loopback port (uvicorn in a thread), for several processes."""
    import uvicorn

    from knapsack_service.main import create_app
    from knapsack_service.settings import Settings

    port = _free_port()
    app = create_app(Settings(redis_url=None, api_tokens=()))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def _quiet_tokenizers(monkeypatch: pytest.MonkeyPatch) -> None:
    # tokenizers warns (and may deadlock) when forked after use.
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
