"""aits plugin for REBOUND, the field's standard N-body code.

* ``rebound_file``: initial conditions read from a REBOUND simulation file or archive
  (``system.params: {path: run.bin, snapshot: -1}``, or ``aits simulate -S rebound_file -p path=run.bin``);
* ``rebound_ias15``: REBOUND's IAS15 run on the same system as a reference,
  ``aits simulate --reference rebound_ias15``: its steps, force evaluations and |dE/E0|;
* :func:`to_simulation` / :func:`save`: aits bodies as a REBOUND simulation (and file).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import rebound
import torch

from aits.errors import UserError
from aits.hookspecs import hookimpl
from aits.interfaces import Reference, ReferenceResult
from aits.physics import Gravity, Systems
from aits.physics.gravity import kinetic_energy
from aits.physics.initial import to_centre_of_mass
from aits.registry import Registrar

Bodies = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def to_simulation(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, G: float = 1.0,
                  softening: float = 0.0) -> rebound.Simulation:
    """One system's bodies, pos and vel (N, D) with D = 2 or 3 and mass (N,), as a REBOUND simulation."""
    sim = rebound.Simulation()
    sim.G, sim.softening = G, softening
    pad = [0.0] * (3 - pos.shape[-1])
    for x, v, m in zip(pos.tolist(), vel.tolist(), mass.tolist()):
        sim.add(m=m, x=x[0], y=x[1], z=([*x[2:], *pad])[0], vx=v[0], vy=v[1], vz=([*v[2:], *pad])[0])
    return sim


def save(path: Path | str, pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, G: float = 1.0) -> Path:
    """Write one system's bodies as a REBOUND simulation file (a one-snapshot archive)."""
    to_simulation(pos, vel, mass, G).save_to_file(str(path), delete_file=True)
    return Path(path)


def bodies_of(sim: rebound.Simulation, dims: int = 3) -> Bodies:
    """A REBOUND simulation's bodies as aits tensors (1, N, dims), (1, N, dims), (1, N)."""
    n = sim.N
    pos, vel, mass = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros(n)
    sim.serialize_particle_data(xyz=pos, vxvyvz=vel, m=mass)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64)[None]  # noqa: E731
    return as_tensor(pos[:, :dims]), as_tensor(vel[:, :dims]), as_tensor(mass)


def rebound_file(*, G: float, rng: torch.Generator, path: str = "", snapshot: int = -1, dims: int = 3,
                 count: int = 1) -> Bodies:
    """Bodies from a REBOUND simulation file or archive (``snapshot``: which one, default the last),
    moved to their centre of mass; ``dims`` = 2 keeps x and y (z and vz must then be zero)."""
    file = Path(path)
    if not path:
        raise UserError("rebound_file needs a path (system.params.path, or --param path=FILE)")
    if not file.is_file():
        raise UserError(f"REBOUND file not found: {file}")
    with warnings.catch_warnings(record=True) as said:  # REBOUND warns before it fails on a foreign file
        warnings.simplefilter("always")
        try:
            archive = rebound.Simulationarchive(str(file))
            snapshots = len(archive)
        except Exception as exc:  # and reports a foreign or damaged file in several ways
            raise UserError(f"{file}: not a REBOUND simulation file or archive ({type(exc).__name__}: {exc})") from None
    for warning in said:  # e.g. a damaged tail of an archive whose first snapshots were read
        warnings.warn(f"{file}: {warning.message}", RuntimeWarning, stacklevel=2)
    if not -snapshots <= snapshot < snapshots:
        raise UserError(f"{file}: snapshot {snapshot} out of range (the archive holds {snapshots})")
    sim = archive[snapshot]
    if abs(sim.G - G) > 1e-12 * abs(G):
        raise UserError(f"{file}: the simulation has G = {sim.G:g}, aits integrates with G = {G:g} (set it with --G "
                        "or physics.G)")
    if dims not in (2, 3) or sim.N < 2:
        raise UserError(f"{file}: need dims 2 or 3 and at least 2 particles, got dims={dims}, N={sim.N}")
    pos3, vel3, mass = bodies_of(sim, 3)
    if dims == 2 and (pos3[..., 2].any() or vel3[..., 2].any()):
        raise UserError(f"{file}: dims=2 but the particles have z or vz != 0")
    if not (mass > 0).all():
        raise UserError(f"{file}: aits needs every particle's mass > 0 (test particles are not supported)")
    pos, vel = to_centre_of_mass(pos3[..., :dims], mass), to_centre_of_mass(vel3[..., :dims], mass)
    return pos.repeat(count, 1, 1), vel.repeat(count, 1, 1), mass.repeat(count, 1)


class IAS15(Reference):
    """REBOUND IAS15 (adaptive, 15th order, epsilon 1e-9): steps, force evaluations, |dE/E0|."""

    name = "rebound_ias15"
    epsilon = 1e-9

    def simulation(self, s: Systems, gravity: Gravity) -> rebound.Simulation:
        if s.batch != 1:
            raise UserError(f"{self.name} runs one system, got a batch of {s.batch}")
        sim = to_simulation(s.pos[0].cpu(), s.vel[0].cpu(), s.mass[0].cpu(), gravity.G, gravity.softening)
        sim.integrator = "ias15"
        sim.integrator.epsilon = self.epsilon
        sim.t = float(s.time[0])
        return sim

    def run(self, s: Systems, t_end: float, gravity: Gravity) -> ReferenceResult:
        """Integrate once untouched (steps, wall time), then once counting force evaluations (a
        zero extra force REBOUND calls at each) and checking aits's energy after every step."""
        timed = self.simulation(s, gravity)
        start = time.perf_counter()
        timed.integrate(t_end, exact_finish_time=1)
        wall = time.perf_counter() - start

        sim = self.simulation(s, gravity)
        e0 = energy(sim, gravity)
        evaluations, errors = [0], [0.0]

        def count(_: object) -> None:
            evaluations[0] += 1

        def check(_: object) -> None:
            errors.append(abs((energy(sim, gravity) - e0) / e0))

        sim.additional_forces, sim.force_is_velocity_dependent, sim.heartbeat = count, 0, check
        sim.integrate(t_end, exact_finish_time=1)
        if sim.steps_done != timed.steps_done:  # both runs are the same computation
            raise RuntimeError(f"IAS15 took {sim.steps_done} steps counting, {timed.steps_done} untouched")
        final = abs((energy(sim, gravity) - e0) / e0)
        return ReferenceResult(f"epsilon={self.epsilon:g}", sim.steps_done, evaluations[0], max(max(errors), final),
                               final, wall, sim.t)


def energy(sim: rebound.Simulation, gravity: Gravity) -> float:
    """The simulation's total energy as aits computes it (the same softening)."""
    pos, vel, mass = bodies_of(sim)
    return float(kinetic_energy(vel, mass)[0] + gravity.potential_energy(pos, mass)[0])


@hookimpl
def aits_register(registrar: Registrar) -> None:
    registrar.initial_conditions(rebound_file)
    registrar.reference(IAS15())
