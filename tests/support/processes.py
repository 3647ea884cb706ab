"""What every test-managed process shares: a context-manager life cycle and a clean stop."""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import Self


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM (a graceful stop), SIGKILL if it is still alive after `grace` seconds; reaps."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ManagedProcess:
    """`with X() as x:` starts it and always closes it, whatever the test did."""

    def start(self) -> Self:
        """Start and wait until usable."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop and clean up what `start` created."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
