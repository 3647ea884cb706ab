"""`knapsack-service serve` in a subprocess on a free port, for tests and benches.

The reliability checks need the real network path (uvicorn's HTTP parser, chunked
bodies, concurrent connections, several worker processes) and the service's real
log output, which an in-process ASGI transport would bypass. The process gets a
clean `KRL_` environment (only what the caller passes), so a developer's shell
settings never leak into a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.processes import ManagedProcess, terminate
from tests.support.redis_server import find_free_port

#: Seconds to wait for /readyz (a cold numba cache compiles kernels first).
READY_TIMEOUT = 120.0


class ServiceProcess(ManagedProcess):
    """One `knapsack-service serve` process; usable as a context manager.

    Args:
        env: `KRL_*` settings for the service (others in the environment are dropped).
        workers: uvicorn worker processes.
        log_path: Where stderr (the JSON log lines) goes; a temporary file by default.
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        workers: int = 1,
        log_path: Path | None = None,
    ) -> None:
        self.env = dict(env or {})
        self.workers = workers
        self.port = find_free_port()
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="krl-service-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the `serve` process (the uvicorn supervisor with workers > 1)."""
        assert self.process is not None
        return self.process.pid

    def start(self) -> ServiceProcess:
        """Start the service and wait until /readyz answers 200."""
        return self.launch().wait_ready()

    def launch(self) -> ServiceProcess:
        """Start the process without waiting (start several, then `wait_ready` each)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("KRL_")}
        env.update({"KRL_LOG_LEVEL": "info", **self.env})
        command = [
            sys.executable, "-m", "knapsack_service.cli", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        return self

    def wait_ready(self) -> ServiceProcess:
        """Wait until /readyz answers 200; raise if the process exits or time runs out."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"service not ready within {READY_TIMEOUT} s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after 15 s."""
        if self.process is None:
            return
        terminate(self.process, grace=15)
        self.process = None

    def log_text(self) -> str:
        """Everything the service wrote to stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the log, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def close(self) -> None:
        """Stop the service and remove a temporary log file."""
        self.stop()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)


__all__ = ["READY_TIMEOUT", "ServiceProcess"]
