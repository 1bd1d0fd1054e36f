"""Batched, differentiable gravitational N-body physics. Knows nothing of files, CLI or plugins.

* :mod:`~aits.physics.gravity` — forces, energies, momenta, the pair free-fall time;
* :mod:`~aits.physics.pairs` — cached pair tables and the energy meter for fixed masses;
* :mod:`~aits.physics.derivatives` — jerk, snap and crackle of the accelerations;
* :mod:`~aits.physics.initial` — initial-condition generators; :mod:`~aits.physics.kepler` — orbits;
* :mod:`~aits.physics.state` — the batched state :class:`Systems`.
"""

from aits.physics.gravity import Gravity
from aits.physics.state import Systems

__all__ = ["Gravity", "Systems"]
