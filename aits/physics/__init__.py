"""Batched, differentiable gravitational N-body physics. Knows nothing of files, CLI or plugins."""

from aits.physics.gravity import Gravity
from aits.physics.state import Systems

__all__ = ["Gravity", "Systems"]
