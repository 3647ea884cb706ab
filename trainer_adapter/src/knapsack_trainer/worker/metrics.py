"""Per-step metrics: JSON lines always, TensorBoard when installed, a console bar."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLogger:
    """Appends one JSON object per step to `<output_dir>/metrics.jsonl`.

    Appending (not truncating) keeps a resumed run's history in one file. Only rank 0
    logs; other ranks build an inactive logger.

    Args:
        output_dir: Run folder.
        active: False on ranks other than 0.
        tensorboard: Also write TensorBoard scalars when `tensorboard` is installed.

    """

    def __init__(self, output_dir: str | Path, *, active: bool = True, tensorboard: bool = True):
        self.active = active
        self.path = Path(output_dir) / METRICS_FILE
        self._file = None
        self._writer: Any = None
        if not active:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.debug("tensorboard is not installed; metrics go to %s only", self.path)
            else:
                self._writer = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record one step's metrics."""
        if not self.active or self._file is None:
            return
        self._file.write(json.dumps({"step": step, **metrics}, sort_keys=True) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and close the outputs."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """Every logged step of a run, in order."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
