"""Data-parallel training under ``torchrun``: process group, device, and small collectives.

``torchrun --nproc_per_node N`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the same command
without it runs one process. NCCL on GPUs, gloo on the CPU. Only rank 0 logs, checkpoints
and exports; decisions that every rank must take together (stop, checkpoint now, skip a
step) go through :meth:`Dist.any`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Dist", "init_distributed"]

log = logging.getLogger(__name__)


@dataclass
class Dist:
    """This process's place in the run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, *flags: bool) -> list[bool]:
        """Each flag OR-ed over all ranks."""
        if not self.enabled:
            return [bool(f) for f in flags]
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average tensors in place over all ranks."""
        if not self.enabled:
            return
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(self.world_size)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def init_distributed(device: str | None = None, timeout_minutes: float = 60.0) -> Dist:
    """Join the process group ``torchrun`` describes, or return a single-process :class:`Dist`.

    ``device``: ``"cpu"``, ``"cuda"`` … or None for CUDA when present. Under several processes
    on GPUs each rank takes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    want = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.type == "cuda":
        index = local if world > 1 or want.index is None else want.index
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    else:
        dev = want
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=timedelta(minutes=timeout_minutes))
        log.info("rank %d/%d joined the %s process group on %s", rank, world, backend, dev)
    return Dist(rank=rank, world_size=world, local_rank=local, device=dev)
