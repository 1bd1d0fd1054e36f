"""Checks that a training run fits this machine, before anything large is allocated: CPU threads
and an estimate of the memory its replay buffer, network, systems and pair forces will take.

A run that cannot fit is one line naming the figure and the config key that sets it (exit 2),
instead of an allocation traceback, a machine driven into swap, or a crash in torch's thread pool.
The estimates are upper bounds of the working set to within a small factor, meant to catch
settings that are off by orders of magnitude, not to budget memory to the byte.
"""

from __future__ import annotations

import inspect
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from aits.config import RunConfig
from aits.errors import UserError
from aits.interfaces import FeatureAdapter
from aits.systems import coerce_params

STATE_COPIES = 16  # live copies of a system's state during one training step (new state, graph, features, ...)
PAIR_COPIES = 8  # (rows, N, N, D) tensors alive at once while the pair forces and their gradient are computed
OPTIMIZER_COPIES = 8  # weights, gradient, Adam's two moments, flat views and the update's temporaries


@dataclass(frozen=True)
class Part:
    what: str
    setting: str  # the config key (and value) that sets it
    bytes: int


def check_threads(threads: int) -> None:
    """``threads`` (0 = torch's default) must not exceed the CPUs this process may use."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads > cpus:
        raise UserError(f"config key threads={threads} is more than the {cpus} CPU(s) available to this process "
                        "(0 = torch's default)")


def check_memory(config: RunConfig, adapter: FeatureAdapter, generators: list[Callable], device: torch.device,
                 dtype: torch.dtype) -> None:
    """Refuse a run whose estimated memory exceeds what ``device`` has available."""
    parts = estimate(config, adapter, generators, torch.empty(0, dtype=dtype).element_size())
    total, available = sum(p.bytes for p in parts), available_memory(device)
    if available is not None and total > available:
        largest = max(parts, key=lambda p: p.bytes)
        raise UserError(f"this run needs about {size(total)} of memory, more than the {size(available)} available "
                        f"on {device.type}; most of it for the {largest.what} ({size(largest.bytes)}, set by "
                        f"{largest.setting})")


def estimate(config: RunConfig, adapter: FeatureAdapter, generators: list[Callable], itemsize: int) -> list[Part]:
    """The memory of a run, in parts, each with the config key that sets it."""
    training = config.training
    history = adapter.history_len * adapter.memory_dim
    layers = [adapter.dim, *config.model.hidden, 1]
    parameters = sum((a + 1) * b for a, b in zip(layers, layers[1:]))
    rows = training.replay_batch_size
    parts = [Part("policy network and optimizer", f"model.hidden={config.model.hidden}",
                  parameters * itemsize * OPTIMIZER_COPIES)]
    shapes = []
    for i, (kind, generator) in enumerate(zip(config.population_configs(), generators)):
        key = config.params_key(i)
        shape = systems_shape(generator, kind.params, config.physics.G)
        if shape is None:
            continue
        count, bodies, dims = shape
        shapes.append((bodies, dims))
        chunk = min(count, max(1, training.max_chunk_pairs // bodies**2))
        rows = max(rows, chunk)
        parts += [Part("training systems", f"{key}.count={count}",
                       count * numbers_per_system(bodies, dims, history) * itemsize * STATE_COPIES),
                  Part(f"pair forces of {bodies}-body systems", f"{key} and training.max_chunk_pairs",
                       chunk * bodies**2 * dims * itemsize * PAIR_COPIES)]
    bodies, dims = max(shapes, default=(2, 3))
    parts += [Part("replay buffer", f"training.replay_capacity={training.replay_capacity}",
                   training.replay_capacity * numbers_per_system(bodies, dims, history) * itemsize),
              Part("network activations", f"model.hidden={config.model.hidden}",
                   rows * sum(config.model.hidden) * itemsize * 4)]
    return parts


def numbers_per_system(bodies: int, dims: int, history: int) -> int:
    """The numbers one system's state (or one replay sample) holds: positions, velocities and
    accelerations, masses, two scalars and the history window."""
    return 3 * bodies * dims + bodies + 2 + history


def systems_shape(generator: Callable, params: dict, G: float) -> tuple[int, int, int] | None:
    """(systems, bodies, dims) that ``generator`` will make from ``params``, learnt from one system
    made with a throwaway random generator; None when that cannot be done (the generator has no
    ``count``, or fails: the real call reports why)."""
    signature = inspect.signature(generator).parameters
    if "count" not in signature:
        return None
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):  # a generator drawing from the global generators changes nothing
            params = coerce_params(generator, getattr(generator, "__name__", "generator"), params)
            count = int(params.get("count", signature["count"].default))
            pos, _, _ = generator(G=G, rng=torch.Generator().manual_seed(0), **{**params, "count": 1})
        return count, int(pos.shape[1]), int(pos.shape[2])
    except Exception:
        return None
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device`` (Linux: MemAvailable), or None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def size(n: float) -> str:
    """``n`` bytes in decimal units, e.g. ``2.8 GB``."""
    unit = 0
    while n >= 1000 and unit < 5:
        n, unit = n / 1000, unit + 1
    return f"{n:.3g} {('bytes', 'kB', 'MB', 'GB', 'TB', 'PB')[unit]}"
