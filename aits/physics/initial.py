"""Initial conditions. Each generator returns ``(pos, vel, mass)`` of shape (B, N, D), (B, N, D),
(B, N) in float64 on the CPU, in the centre-of-mass frame."""

from __future__ import annotations

import math

import torch

from aits.errors import UserError
from aits.physics import kepler
from aits.physics.gravity import Gravity, kinetic_energy

Bodies = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _place(rel_pos: torch.Tensor, rel_vel: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor, dims: int) -> Bodies:
    """Put a relative orbit (B, 2) into the centre-of-mass frame of two bodies in ``dims`` dimensions."""
    if dims not in (2, 3):
        raise UserError(f"dims must be 2 or 3, not {dims}")
    pad = torch.zeros(rel_pos.shape[0], dims - 2, dtype=rel_pos.dtype)
    return two_bodies(torch.cat([rel_pos, pad], -1), torch.cat([rel_vel, pad], -1), m1, m2)


def two_bodies(rel_pos: torch.Tensor, rel_vel: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor) -> Bodies:
    """Two bodies of masses ``m1``, ``m2`` (B,) about their centre of mass, from their relative
    position and velocity (B, D) (body 2 minus body 1)."""
    total = (m1 + m2)[:, None]
    pos = torch.stack([-m2[:, None] / total * rel_pos, m1[:, None] / total * rel_pos], 1)
    vel = torch.stack([-m2[:, None] / total * rel_vel, m1[:, None] / total * rel_vel], 1)
    return pos, vel, torch.stack([m1, m2], 1)


def _check_binary(a: float, e: float) -> None:
    if not a > 0:
        raise UserError(f"semi-major axis a must be > 0, got {a}")
    if not 0 <= e < 1:
        raise UserError(f"eccentricity e must be in [0, 1), got {e}")


def kepler_binary(
    *, G: float, rng: torch.Generator, m1: float = 1.0, m2: float = 1.0, a: float = 1.0, e: float = 0.5,
    dims: int = 3, count: int = 1,
) -> Bodies:
    """A Kepler binary with masses m1, m2, semi-major axis a and eccentricity e, at pericentre."""
    _check_binary(a, e)
    if m1 <= 0 or m2 <= 0:
        raise UserError(f"masses must be > 0, got m1={m1}, m2={m2}")
    full = lambda v: torch.full((count,), float(v), dtype=torch.float64)  # noqa: E731
    rel_pos, rel_vel = kepler.relative_state(full(a), full(e), full(0.0), full(m1 + m2), G)
    return _place(rel_pos, rel_vel, full(m1), full(m2), dims)


PHASES = ("pericentre", "apocentre", "uniform_time", "uniform_angle")


def binary_batch(
    *, G: float, rng: torch.Generator, count: int = 64, e_min: float = 0.0, e_max: float = 0.9,
    a_min: float = 1.0, a_max: float = 1.0, q_min: float = 1.0, q_max: float = 1.0, m_total: float = 2.0,
    phase: str = "uniform_time", dims: int = 3,
) -> Bodies:
    """``count`` binaries with e uniform in [e_min, e_max], a log-uniform in [a_min, a_max] and mass
    ratio q = m2/m1 uniform in [q_min, q_max]. ``phase`` places each on its orbit: at pericentre,
    apocentre, uniform in mean anomaly (``uniform_time``) or uniform in true anomaly (``uniform_angle``)."""
    if count < 1:
        raise UserError(f"count must be >= 1, got {count}")
    if not (0 <= e_min <= e_max < 1):
        raise UserError(f"need 0 <= e_min <= e_max < 1, got e_min={e_min}, e_max={e_max}")
    if not (0 < a_min <= a_max):
        raise UserError(f"need 0 < a_min <= a_max, got a_min={a_min}, a_max={a_max}")
    if not (0 < q_min <= q_max) or m_total <= 0:
        raise UserError("need 0 < q_min <= q_max and m_total > 0")
    if phase not in PHASES:
        raise UserError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    u = lambda: torch.rand(count, generator=rng, dtype=torch.float64)  # noqa: E731
    e = e_min + (e_max - e_min) * u()
    a = a_min * (a_max / a_min) ** u()
    q = q_min + (q_max - q_min) * u()
    m1 = m_total / (1 + q)
    angle = 2 * math.pi * u()
    true_anomaly = {
        "pericentre": torch.zeros(count, dtype=torch.float64),
        "apocentre": torch.full((count,), math.pi, dtype=torch.float64),
        "uniform_time": kepler.true_from_mean_anomaly(angle, e),
        "uniform_angle": angle,
    }[phase]
    rel_pos, rel_vel = kepler.relative_state(a, e, true_anomaly, torch.full_like(a, m_total), G)
    return _place(rel_pos, rel_vel, m1, m_total - m1, dims)


def _fixed(pos: list, vel: list, mass: list, count: int) -> Bodies:
    t = lambda v: torch.tensor(v, dtype=torch.float64).expand(count, *torch.tensor(v).shape).clone()  # noqa: E731
    return t(pos), t(vel), t(mass)


def figure_eight(*, G: float, rng: torch.Generator, count: int = 1) -> Bodies:
    """The Chenciner-Montgomery figure-eight choreography (three unit masses, G = 1, period ~6.3259)."""
    if G != 1.0:
        raise UserError("figure_eight is defined for G = 1")
    x1 = [0.97000436, -0.24308753]
    v3 = [-0.93240737, -0.86473146]
    pos = [x1, [-x1[0], -x1[1]], [0.0, 0.0]]
    vel = [[-v3[0] / 2, -v3[1] / 2], [-v3[0] / 2, -v3[1] / 2], v3]
    return _fixed(pos, vel, [1.0, 1.0, 1.0], count)


def pythagorean(*, G: float, rng: torch.Generator, count: int = 1) -> Bodies:
    """Burrau's Pythagorean problem: masses 3, 4, 5 at rest at the corners of a 3-4-5 triangle."""
    pos = torch.tensor([[1.0, 3.0], [-2.0, -1.0], [1.0, -1.0]], dtype=torch.float64)
    mass = torch.tensor([3.0, 4.0, 5.0], dtype=torch.float64)
    pos = pos - (mass[:, None] * pos).sum(0) / mass.sum()
    return _fixed(pos.tolist(), [[0.0, 0.0]] * 3, mass.tolist(), count)


def cluster(
    *, G: float, rng: torch.Generator, count: int = 1, n: int = 8, dims: int = 3, virial: float = 0.5,
    radius: float = 1.0,
) -> Bodies:
    """A random bound cluster of ``n`` equal masses (total 1), uniform in a ball of ``radius``, with
    Gaussian velocities scaled to the virial ratio ``virial`` = K/|W| (< 1 keeps it bound)."""
    if n < 2:
        raise UserError(f"a cluster needs n >= 2 bodies, got {n}")
    if not 0 < virial < 1:
        raise UserError(f"virial must be in (0, 1) for a bound cluster, got {virial}")
    if radius <= 0 or dims not in (2, 3):
        raise UserError("cluster needs radius > 0 and dims 2 or 3")
    direction = torch.randn(count, n, dims, generator=rng, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    r = radius * torch.rand(count, n, 1, generator=rng, dtype=torch.float64) ** (1 / dims)
    pos = direction * r
    vel = torch.randn(count, n, dims, generator=rng, dtype=torch.float64)
    mass = torch.full((count, n), 1.0 / n, dtype=torch.float64)
    pos, vel = to_centre_of_mass(pos, mass), to_centre_of_mass(vel, mass)
    return pos, virialise(pos, vel, mass, G, virial), mass


def virialise(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, G: float, virial: float) -> torch.Tensor:
    """``vel`` (B, N, D) scaled so that each system's kinetic over |potential| energy is ``virial``."""
    w, k = Gravity(G).potential_energy(pos, mass), kinetic_energy(vel, mass)
    return vel * torch.sqrt(virial * w.abs() / k)[:, None, None]


def to_centre_of_mass(x: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """``x`` (B, N, D) minus its mass-weighted mean."""
    return x - (mass[..., None] * x).sum(1, keepdim=True) / mass.sum(1)[:, None, None]
