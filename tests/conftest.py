"""Shared fixtures: small, fast configurations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch

from aits.config import load_config


def small_config(*overrides: str):
    """The default config shrunk to a few systems and short Part 2 passes."""
    base = ["system.params.count=8", "training.epochs=2", "training.max_generalize_iters=3",
            "training.replay_batch_size=64", "training.replay_capacity=2000"]
    return load_config(None, base + list(overrides))


@pytest.fixture
def small():
    return small_config


@dataclass(frozen=True)
class FakeDist:
    name: str
    version: str


@dataclass(frozen=True)
class FakeEntryPoint:
    """Stands in for an ``importlib.metadata.EntryPoint`` of the group ``aits``."""

    name: str
    target: Callable[[], Any]
    dist: FakeDist

    def load(self) -> Any:
        return self.target()


def assert_same_state(a: Any, b: Any, where: str, rel: float = 0.0) -> None:
    """Nested dicts, lists, tensors and numbers equal (NaN equal to NaN); with ``rel`` > 0, float
    tensors to ``rel`` of their largest value and floats to ``rel`` relative."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, where
        if rel and a.is_floating_point() and a.numel():
            assert float((a - b).abs().max()) <= rel * float(a.abs().max()), where
        else:
            assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}", rel)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]", rel)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    elif isinstance(a, float) and rel:
        assert isinstance(b, float) and math.isclose(a, b, rel_tol=rel), where
    else:
        assert a == b, where
