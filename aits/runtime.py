"""Device, dtype and seeding."""

from __future__ import annotations

import random
import warnings

import torch

from aits.errors import UserError, clip


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` as a device of this machine, or a one-line UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"unknown device {clip(repr(name), 40)} (use cpu, cuda, cuda:N or auto)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but no CUDA device is available (use --device cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def warn_compile_failed(exc: Exception, what: str, stacklevel: int = 3) -> None:
    """The one-line warning when ``torch.compile`` fails and ``what`` goes on eagerly."""
    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    warnings.warn(f"compile: torch.compile failed ({type(exc).__name__}: {reason}); {what} runs eagerly",
                  RuntimeWarning, stacklevel=stacklevel + 1)


def resolve_dtype(name: str) -> torch.dtype:
    return {"float64": torch.float64, "float32": torch.float32}[name]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy (when present) and torch; return the run's own generator."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict:
    """Every random state as tensors and plain data (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["internal"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
