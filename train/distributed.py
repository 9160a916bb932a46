"""torchrun integration: rank discovery, process group set-up and metric all-reduce."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

_logger = logging.getLogger(__name__)

# Ranks wait for rank 0's first verification of the data (see main_process_first), which on a
# large data set on slow storage can outlast NCCL's default 10-minute timeout: they wait in a
# CPU (gloo) group with room for hours instead.
SETUP_TIMEOUT = timedelta(hours=6)


class DistributedError(RuntimeError):
    """The torchrun environment is inconsistent; the message says which variable."""


class OtherRankFailedError(RuntimeError):
    """Rank 0 failed at work the other ranks wait for; it reports the error, they exit quietly."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: global rank, rank on its node, and the world size."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    setup_group: Any = field(default=None, compare=False, repr=False)  # gloo, SETUP_TIMEOUT

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes logs and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"environment variable {name}={text!r} is not an integer") from None


def init_distributed(device: str) -> DistContext:
    """Read RANK/LOCAL_RANK/WORLD_SIZE (set by torchrun) and join the process group.

    NCCL on the GPU, gloo on the CPU. Without torchrun this is a single process and no group.
    """
    ctx = DistContext(rank=_env_int("RANK", 0), local_rank=_env_int("LOCAL_RANK", 0),
                      world_size=_env_int("WORLD_SIZE", 1))
    if not 0 <= ctx.rank < ctx.world_size:
        raise DistributedError(f"RANK={ctx.rank} is outside WORLD_SIZE={ctx.world_size}")
    if not ctx.enabled:
        return ctx
    if device == "gpu":
        if ctx.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK={ctx.local_rank} but this node has {torch.cuda.device_count()} GPUs; "
                "start torchrun with --nproc_per_node at most the GPU count")
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend="nccl" if device == "gpu" else "gloo")
    ctx = dataclasses.replace(ctx, setup_group=dist.new_group(backend="gloo", timeout=SETUP_TIMEOUT))
    _logger.info("rank %d/%d (local %d) joined the %s group", ctx.rank, ctx.world_size,
                 ctx.local_rank, dist.get_backend())
    return ctx


def all_reduce_sum(values: list[float], device: torch.device, ctx: DistContext) -> list[float]:
    """Element-wise sum over ranks (float64, so image counts stay exact)."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def any_rank(flag: bool, device: torch.device, ctx: DistContext) -> bool:
    """True on every rank when it is True on any: all ranks stop at the same step."""
    return all_reduce_sum([1.0 if flag else 0.0], device, ctx)[0] > 0


def gather_to_main(value: Any, ctx: DistContext) -> list[Any] | None:
    """Every rank's ``value`` as a list on rank 0 (None elsewhere); a pickled object gather."""
    if not ctx.enabled:
        return [value]
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


@contextmanager
def main_process_first(ctx: DistContext) -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (e.g. a verification whose cache
    the others then read). If it fails on rank 0, the other ranks raise ``OtherRankFailedError``
    instead of running it, so one error is reported once rather than as a hang or a trace. The
    others wait in ``ctx.setup_group`` (gloo, ``SETUP_TIMEOUT``), not in NCCL."""
    if not ctx.enabled:
        yield
        return
    if ctx.is_main:
        try:
            yield
        except BaseException:
            _setup_sum(1.0, ctx)
            raise
        _setup_sum(0.0, ctx)
        return
    if _setup_sum(0.0, ctx) > 0:  # waits here until rank 0 is done
        raise OtherRankFailedError("rank 0 failed and reported why")
    yield


def any_rank_during_setup(flag: bool, ctx: DistContext) -> bool:
    """``any_rank`` for set-up, before the loaders and the model exist (the set-up group, CPU)."""
    return _setup_sum(1.0 if flag else 0.0, ctx) > 0 if ctx.enabled else flag


def _setup_sum(value: float, ctx: DistContext) -> float:
    """``value`` summed over ranks in the set-up group (a CPU tensor: gloo)."""
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=ctx.setup_group)
    return float(tensor.item())


def broadcast_from_main(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (a pickled object broadcast in the set-up group: gloo, on
    the CPU, with ``SETUP_TIMEOUT``), for what rank 0 alone decided during set-up."""
    if not ctx.enabled:
        return value
    holder = [value if ctx.is_main else None]
    dist.broadcast_object_list(holder, src=0, group=ctx.setup_group)
    return holder[0]


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), as DDP's forward does."""
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (avoids NCCL's warning at exit). No barrier: after an error on one
    rank the others may never arrive, and torchrun ends them when this rank exits non-zero."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
