"""Pair computations in blocks of systems: the systems of a batch are independent, so a function of
their (B, N, N, ...) pair tensors gives the same numbers block by block. Eagerly on a CPU, blocks of
at most ``BLOCK_PAIRS`` pairs keep the intermediates in the cache and the peak memory small;
compiled (one fused loop anyway) or on a GPU, one block."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

BLOCK_PAIRS = 1 << 16

Out = TypeVar("Out", torch.Tensor, tuple[torch.Tensor, ...])


def in_blocks(fn: Callable[..., Out], *tensors: torch.Tensor) -> Out:
    """``fn(*tensors)`` with every tensor (B, N, ...) cut along B into blocks of at most
    ``BLOCK_PAIRS`` pairs, the outputs (a tensor or a tuple of them, each (B, ...)) concatenated."""
    batch, n = tensors[0].shape[:2]
    size = max(1, BLOCK_PAIRS // n**2)
    if torch.compiler.is_compiling() or tensors[0].device.type != "cpu" or batch <= size:
        return fn(*tensors)
    blocks = [fn(*(t[i : i + size] for t in tensors)) for i in range(0, batch, size)]
    if isinstance(blocks[0], torch.Tensor):
        return torch.cat(blocks)
    return tuple(torch.cat(parts) for parts in zip(*blocks))
