"""Initial conditions of astrophysical scenarios: hierarchical triples, planetary systems, hyperbolic
flybys and Plummer clusters. Same contract as :mod:`aits.physics.initial`: ``(pos, vel, mass)`` of
shape (B, N, D), (B, N, D), (B, N) in float64 on the CPU, in the centre-of-mass frame."""

from __future__ import annotations

import math

import torch

from aits.errors import UserError
from aits.physics import kepler
from aits.physics.initial import PHASES, Bodies, to_centre_of_mass, two_bodies, virialise

F64 = torch.float64


def _uniform(rng: torch.Generator, count: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(count, generator=rng, dtype=F64)


def _anomaly(rng: torch.Generator, count: int, e: torch.Tensor, phase: str) -> torch.Tensor:
    """True anomalies (count,) placed on their orbits as ``phase`` says (see ``initial.PHASES``)."""
    if phase not in PHASES:
        raise UserError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    if phase == "pericentre":
        return torch.zeros(count, dtype=F64)
    if phase == "apocentre":
        return torch.full((count,), math.pi, dtype=F64)
    angle = _uniform(rng, count, 0.0, 2 * math.pi)
    return kepler.true_from_mean_anomaly(angle, e) if phase == "uniform_time" else angle


def _orbit(a: torch.Tensor, e: torch.Tensor, anomaly: torch.Tensor, m_total: torch.Tensor, G: float,
           inclination: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative position and velocity (B, D) of a Kepler orbit (a < 0 for a hyperbola) in a plane
    tilted by ``inclination`` about the x axis (3-D only)."""
    pos, vel = kepler.relative_state(a, e, anomaly, m_total, G)
    if dims == 2:
        return pos, vel
    c, s = torch.cos(inclination), torch.sin(inclination)
    tilt = lambda x: torch.stack([x[:, 0], c * x[:, 1], s * x[:, 1]], -1)  # noqa: E731
    return tilt(pos), tilt(vel)


def _check_dims(dims: int) -> None:
    if dims not in (2, 3):
        raise UserError(f"dims must be 2 or 3, not {dims}")


def hierarchical_triple(
    *, G: float, rng: torch.Generator, count: int = 1, m1: float = 1.0, m2: float = 1.0, m3: float = 1.0,
    a_in: float = 1.0, e_in: float = 0.5, a_out: float = 20.0, e_out: float = 0.0, inclination: float = 0.0,
    phase: str = "pericentre", dims: int = 3,
) -> Bodies:
    """An inner binary (m1, m2; a_in, e_in) orbited by m3 on an outer Kepler orbit (a_out, e_out)
    about the inner pair's centre of mass, tilted by ``inclination`` (radians) to the inner plane.
    ``phase`` places both orbits (``uniform_*`` draws each system's anomalies)."""
    _check_dims(dims)
    if min(m1, m2, m3) <= 0:
        raise UserError(f"masses must be > 0, got m1={m1}, m2={m2}, m3={m3}")
    if not (0 < a_in < a_out and 0 <= e_in < 1 and 0 <= e_out < 1):
        raise UserError("need 0 < a_in < a_out and eccentricities in [0, 1)")
    if a_out * (1 - e_out) <= a_in * (1 + e_in):
        raise UserError("the outer pericentre a_out (1 - e_out) must lie outside the inner apocentre a_in (1 + e_in)")
    full = lambda v: torch.full((count,), float(v), dtype=F64)  # noqa: E731
    e_i, e_o, m_in = full(e_in), full(e_out), m1 + m2
    r_in, v_in = _orbit(full(a_in), e_i, _anomaly(rng, count, e_i, phase), full(m_in), G, full(0.0), dims)
    r_out, v_out = _orbit(full(a_out), e_o, _anomaly(rng, count, e_o, phase), full(m_in + m3), G,
                          full(inclination), dims)
    inner_pos, inner_vel, inner_mass = two_bodies(r_in, v_in, full(m1), full(m2))
    pos = torch.cat([inner_pos, r_out[:, None]], 1)
    vel = torch.cat([inner_vel, v_out[:, None]], 1)
    mass = torch.cat([inner_mass, full(m3)[:, None]], 1)
    return to_centre_of_mass(pos, mass), to_centre_of_mass(vel, mass), mass


def planetary_system(
    *, G: float, rng: torch.Generator, count: int = 1, planets: int = 2, m_star: float = 1.0,
    m_planet: float = 9.55e-4, mass_ratio: float = 0.3, a_first: float = 5.2, a_ratio: float = 1.84,
    e_max: float = 0.06, max_inclination: float = 0.04, dims: int = 3,
) -> Bodies:
    """A star and ``planets`` planets on Kepler orbits about it: planet k has mass m_planet
    mass_ratio^k and semi-major axis a_first a_ratio^k, eccentricity uniform in [0, e_max], mean
    anomaly uniform, inclination uniform in [0, max_inclination]. The defaults resemble the Sun,
    Jupiter and Saturn (G = 1, lengths in au: Jupiter's period is about 74.5)."""
    _check_dims(dims)
    if planets < 1 or m_star <= 0 or m_planet <= 0 or mass_ratio <= 0:
        raise UserError("need planets >= 1 and positive masses")
    if not (a_first > 0 and a_ratio > 1 and 0 <= e_max < 1 and max_inclination >= 0):
        raise UserError("need a_first > 0, a_ratio > 1, 0 <= e_max < 1 and max_inclination >= 0")
    pos, vel, mass = [torch.zeros(count, dims, dtype=F64)], [torch.zeros(count, dims, dtype=F64)], [m_star]
    for k in range(planets):
        m = m_planet * mass_ratio**k
        e = _uniform(rng, count, 0.0, e_max)
        anomaly = _anomaly(rng, count, e, "uniform_time")
        tilt = _uniform(rng, count, 0.0, max_inclination)
        a = torch.full((count,), a_first * a_ratio**k, dtype=F64)
        r, v = _orbit(a, e, anomaly, torch.full((count,), m_star + m, dtype=F64), G, tilt, dims)
        pos.append(r)
        vel.append(v)
        mass.append(m)
    masses = torch.tensor(mass, dtype=F64).expand(count, -1).clone()
    return to_centre_of_mass(torch.stack(pos, 1), masses), to_centre_of_mass(torch.stack(vel, 1), masses), masses


def flyby(
    *, G: float, rng: torch.Generator, count: int = 1, m1: float = 1.0, m2: float = 1.0, q: float = 0.5,
    e_min: float = 1.5, e_max: float = 1.5, r_start: float = 10.0, dims: int = 3,
) -> Bodies:
    """An unbound (hyperbolic) two-body encounter with pericentre distance ``q`` and eccentricity
    uniform in [e_min, e_max] (> 1), starting inbound at separation ``r_start``; it passes pericentre
    after :func:`flyby_time_to_pericentre`."""
    _check_dims(dims)
    if m1 <= 0 or m2 <= 0:
        raise UserError(f"masses must be > 0, got m1={m1}, m2={m2}")
    if not (1 < e_min <= e_max and 0 < q < r_start):
        raise UserError("need 1 < e_min <= e_max and 0 < q < r_start")
    e = _uniform(rng, count, e_min, e_max)
    p = q * (1 + e)
    anomaly = -torch.acos(((p / r_start - 1) / e).clamp(-1, 1))  # inbound: before pericentre
    a = -q / (e - 1)
    full = lambda v: torch.full((count,), float(v), dtype=F64)  # noqa: E731
    r, v = _orbit(a, e, anomaly, full(m1 + m2), G, full(0.0), dims)
    return two_bodies(r, v, full(m1), full(m2))


def flyby_time_to_pericentre(q: float, e: float, r: float, m_total: float, G: float = 1.0) -> float:
    """Time from separation ``r`` to pericentre on a hyperbola (pericentre ``q``, eccentricity ``e``):
    the hyperbolic Kepler equation M = e sinh H - H, with cosh H = (1 + r / |a|) / e."""
    a = q / (e - 1)
    big_h = math.acosh((1 + r / a) / e)
    return (e * math.sinh(big_h) - big_h) * math.sqrt(a**3 / (G * m_total))


def plummer_velocities(radius: torch.Tensor, rng: torch.Generator, G: float = 1.0, m_total: float = 1.0,
                       scale: float = 1.0) -> torch.Tensor:
    """Isotropic velocities (..., 3) drawn from the Plummer distribution function at ``radius`` (...):
    the speed is q v_esc with q ~ q^2 (1 - q^2)^(7/2) (rejection sampling), v_esc the local escape speed."""
    v_esc = (2 * G * m_total / scale) ** 0.5 * (1 + (radius / scale) ** 2) ** -0.25
    q = torch.empty_like(radius)
    todo = torch.ones_like(radius, dtype=torch.bool)
    while bool(todo.any()):  # acceptance ~ 0.43 per try
        trial = torch.rand(radius.shape, generator=rng, dtype=F64)
        height = 0.1 * torch.rand(radius.shape, generator=rng, dtype=F64)
        ok = todo & (height < trial**2 * (1 - trial**2) ** 3.5)
        q = torch.where(ok, trial, q)
        todo &= ~ok
    direction = torch.randn(*radius.shape, 3, generator=rng, dtype=F64)
    return (q * v_esc)[..., None] * direction / direction.norm(dim=-1, keepdim=True)


def plummer(
    *, G: float, rng: torch.Generator, count: int = 1, n: int = 16, virial: float = 0.5, radius: float = 1.0,
    cutoff: float = 10.0,
) -> Bodies:
    """A Plummer sphere of ``n`` equal masses (total 1, scale radius ``radius``, radii up to ``cutoff``
    times it) with velocities from its distribution function, rescaled to the exact virial ratio
    ``virial`` = K/|W| of the drawn bodies (0.5: in virial equilibrium). 3-D."""
    if n < 2:
        raise UserError(f"a cluster needs n >= 2 bodies, got {n}")
    if not (0 < virial < 1 and radius > 0 and cutoff > 1):
        raise UserError("plummer needs virial in (0, 1), radius > 0 and cutoff > 1")
    inside = cutoff**3 / (1 + cutoff**2) ** 1.5  # mass fraction within the cutoff
    m = inside * torch.rand(count, n, generator=rng, dtype=F64).clamp_min(1e-12)
    r = radius / (m ** (-2 / 3) - 1).sqrt()
    direction = torch.randn(count, n, 3, generator=rng, dtype=F64)
    pos = r[..., None] * direction / direction.norm(dim=-1, keepdim=True)
    vel = plummer_velocities(r, rng, G, 1.0, radius)
    mass = torch.full((count, n), 1.0 / n, dtype=F64)
    pos, vel = to_centre_of_mass(pos, mass), to_centre_of_mass(vel, mass)
    return pos, virialise(pos, vel, mass, G, virial), mass
