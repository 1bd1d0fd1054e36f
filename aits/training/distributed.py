"""Several processes: data-parallel training on ``torch.distributed``, launched by ``torchrun``.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; :func:`launched` then joins the process group
(gloo for CPU tensors, NCCL for CUDA ones, one GPU per process: ``cuda:LOCAL_RANK``) and returns a
:class:`Distributed` strategy. Without them it returns :class:`SingleProcess`, and nothing of
``torch.distributed`` is touched.

A collective that fails because another process died or failed becomes :class:`PeerFailed`, one
line, so that every process stops within seconds of the first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from aits.errors import RunFailed, UserError, clip
from aits.training.strategy import SingleProcess, Strategy, share

T = TypeVar("T")
TIMEOUT = timedelta(minutes=10)  # a process waits this long for a silent (hung, not dead) peer


class PeerFailed(RunFailed):
    """A collective failed: another process of the run stopped (its own line says why)."""


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launched() -> Strategy:
    """The strategy of this process: :class:`Distributed` under torchrun, else :class:`SingleProcess`."""
    if not launched_by_torchrun():
        return SingleProcess()
    if dist.is_initialized():
        return Distributed()
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None
    if not 0 <= rank < world_size:
        raise UserError(f"RANK={rank} outside WORLD_SIZE={world_size}")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    try:
        dist.init_process_group(backend, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as exc:
        raise RunFailed(f"cannot join the process group of torchrun ({clip(str(exc))})") from None
    return Distributed()


def single_process_only(command: str) -> None:
    """Refuse to run ``command`` as one of several torchrun processes (one line)."""
    if launched_by_torchrun() and os.environ["WORLD_SIZE"] != "1":
        raise UserError(f"aits {command} runs in one process; launch it without torchrun (aits train runs on several)")


def relaunch(args: str) -> str:
    """The command line that runs ``aits <args>`` on the processes this one was launched with."""
    if not launched_by_torchrun() or os.environ["WORLD_SIZE"] == "1":
        return f"aits {args}"
    if os.environ.get("LOCAL_WORLD_SIZE") == os.environ["WORLD_SIZE"]:
        return f"torchrun --standalone --nproc_per_node={os.environ['WORLD_SIZE']} -m aits {args}"
    return f"torchrun <the same rendezvous options> -m aits {args}"


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class Distributed:
    """Every reduction over the processes of the default process group; scalars and decisions travel
    on the run's device (set by :meth:`place`)."""

    def __init__(self) -> None:
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cpu")

    @property
    def is_global_zero(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """The device this process trains on: ``cuda:LOCAL_RANK`` for a CUDA run, else ``device``."""
        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise UserError(f"LOCAL_RANK={self.local_rank} but this machine has {torch.cuda.device_count()} "
                                "CUDA device(s); start at most one process per GPU")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        return device

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        self._collective(lambda: dist.all_reduce(tensor))
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        votes = self.all_reduce(torch.tensor(int(decision), device=self.device))
        return bool(votes == self.world_size) if all else bool(votes > 0)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self._collective(lambda: dist.all_gather(parts, tensor.contiguous()))
        return torch.stack(parts)

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype == torch.bool:  # not a type every backend reduces
            return self.gather_rows(tensor.to(torch.uint8)).bool()
        sizes = self.all_gather(torch.tensor(tensor.shape[0], device=tensor.device)).tolist()
        padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.shape[0]] = tensor
        return torch.cat([rows[:n] for rows, n in zip(self.all_gather(padded), sizes)])

    def broadcast_object(self, obj: T) -> T:
        box = [obj]
        self._collective(lambda: dist.broadcast_object_list(box, src=0, device=self.device))
        return box[0]

    def shard(self, total: int) -> slice:
        return share(total, self.rank, self.world_size)

    def _collective(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except RuntimeError:  # DistBackendError and the like: a peer died, failed or hung
            raise PeerFailed(f"another of the {self.world_size} processes of this run stopped") from None
