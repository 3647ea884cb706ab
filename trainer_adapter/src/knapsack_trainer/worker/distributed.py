"""Data parallelism with torch.distributed: gloo on CPU, NCCL on GPU.

Each rank samples and scores its shard of the allocation, then the ranks exchange
only what must be global: the allocation (rank 0 asks the service once, so the
service counts one allocation per step), the rewards of every rollout (a group may be
split across ranks and its advantage needs the whole group), a few counters, and
the gradients, summed with one flat all-reduce.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """True when there are other ranks to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, which logs, checkpoints and allocates."""
        return self.rank == 0


def init_distributed(timeout_seconds: float = 600.0) -> DistContext:
    """Join the process group described by torchrun's environment, if any.

    `WORLD_SIZE` > 1 (set by `torchrun` or a test) starts a group: NCCL when CUDA is
    available, else gloo. Without it the job is a single process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout_seconds),
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed(context: DistContext) -> None:
    """Leave the process group (a no-op for a single process)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(context: DistContext, value: T | None) -> T:
    """Rank 0's `value` on every rank."""
    if not context.enabled:
        assert value is not None
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]  # type: ignore[return-value]


def all_gather_objects(context: DistContext, value: T) -> list[T]:
    """Every rank's `value`, in rank order."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_sums(context: DistContext, values: Sequence[float]) -> list[float]:
    """Element-wise sum of `values` over the ranks (float64, on the CPU or GPU)."""
    if not context.enabled:
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device(context))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def all_reduce_gradients(context: DistContext, parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum the gradients over the ranks, in one flat buffer.

    Each rank's loss is already divided by the *global* token or sequence count
    (`core_algos.agg_loss(global_denominator=...)`), so the sum is the gradient of
    the whole batch's loss. A parameter without a gradient (a rank with nothing to
    learn from this step) contributes zeros, so every rank joins the collective.
    """
    if not context.enabled:
        return
    trainable = [p for p in parameters if p.requires_grad]
    for parameter in trainable:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    flat = torch.cat([p.grad.reshape(-1) for p in trainable])  # type: ignore[union-attr]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for parameter in trainable:
        size = parameter.numel()
        parameter.grad.copy_(flat[offset : offset + size].view_as(parameter))  # type: ignore[union-attr]
        offset += size


def broadcast_parameters(context: DistContext, module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical starting points)."""
    if not context.enabled:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def barrier(context: DistContext) -> None:
    """Wait for every rank."""
    if context.enabled:
        dist.barrier()


def _collective_device(context: DistContext) -> torch.device:
    # NCCL reduces only CUDA tensors; gloo only CPU ones.
    return context.device if context.device.type == "cuda" else torch.device("cpu")
