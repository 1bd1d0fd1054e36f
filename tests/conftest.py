"""Shared fixtures: small, fast configurations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest

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
