"""Scenario initial conditions checked against physics: the orbits they were asked for (Kepler
elements), a hyperbolic flyby that reaches pericentre when the hyperbolic Kepler equation says,
Plummer clusters in virial equilibrium with the Plummer density and velocity dispersion."""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

from aits.builtin.integrators import Leapfrog
from aits.errors import UserError
from aits.physics import Gravity, kepler, scenarios
from aits.physics.gravity import kinetic_energy
from aits.registry import get_registry

F64 = torch.float64


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def elements(pos: torch.Tensor, vel: torch.Tensor, i: int, j: int, m_total: torch.Tensor | float, G: float = 1.0):
    """Semi-major axis and eccentricity of body j about body i (B,), for the total mass given."""
    m = torch.as_tensor(m_total, dtype=F64).expand(pos.shape[0])
    return kepler.elements(pos[:, j] - pos[:, i], vel[:, j] - vel[:, i], m, G)


def assert_centre_of_mass_frame(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor) -> None:
    for x in (pos, vel):
        assert ((mass[..., None] * x).sum(1).abs() <= 1e-14 * (mass[..., None] * x.abs()).sum(1).clamp_min(1)).all()


@pytest.mark.parametrize("phase", ["pericentre", "uniform_time"])
@pytest.mark.parametrize("dims", [2, 3])
def test_hierarchical_triple_has_the_inner_and_outer_orbits_asked_for(phase: str, dims: int) -> None:
    G, m1, m2, m3 = 2.0, 1.0, 0.5, 0.8
    pos, vel, mass = scenarios.hierarchical_triple(G=G, rng=rng(), count=8, m1=m1, m2=m2, m3=m3, a_in=1.5,
                                                   e_in=0.6, a_out=25.0, e_out=0.3, inclination=0.4,
                                                   phase=phase, dims=dims)
    assert pos.shape == (8, 3, dims) and mass.shape == (8, 3)
    assert_centre_of_mass_frame(pos, vel, mass)
    a, e = elements(pos, vel, 0, 1, m1 + m2, G)
    torch.testing.assert_close(a, torch.full_like(a, 1.5), rtol=1e-12, atol=0)
    torch.testing.assert_close(e, torch.full_like(e, 0.6), rtol=1e-12, atol=0)
    inner = lambda x: (m1 * x[:, 0] + m2 * x[:, 1]) / (m1 + m2)  # noqa: E731
    centre = torch.stack([inner(pos), pos[:, 2]], 1), torch.stack([inner(vel), vel[:, 2]], 1)
    a, e = elements(*centre, 0, 1, m1 + m2 + m3, G)
    torch.testing.assert_close(a, torch.full_like(a, 25.0), rtol=1e-12, atol=0)
    torch.testing.assert_close(e, torch.full_like(e, 0.3), rtol=1e-12, atol=1e-12)
    if phase == "uniform_time":
        assert not torch.allclose(pos[0], pos[1])


def test_planetary_system_planets_orbit_the_star_as_drawn() -> None:
    pos, vel, mass = scenarios.planetary_system(G=1.0, rng=rng(), count=16, planets=3)
    assert pos.shape == (16, 4, 3)
    assert_centre_of_mass_frame(pos, vel, mass)
    for k in range(3):
        m_k = 9.55e-4 * 0.3**k
        torch.testing.assert_close(mass[:, k + 1], torch.full((16,), m_k, dtype=F64))
        a, e = elements(pos, vel, 0, k + 1, mass[:, 0] + m_k)
        torch.testing.assert_close(a, torch.full_like(a, 5.2 * 1.84**k), rtol=1e-12, atol=0)
        assert (e <= 0.06).all() and e.std() > 0.005
    # nearly Keplerian: the planets' mutual energy is a small part of the total
    energy = Gravity().energy(Gravity().initialise(pos, vel, mass))
    kepler_sum = sum(-mass[:, 0] * mass[:, k] / (2 * 5.2 * 1.84 ** (k - 1)) for k in (1, 2, 3))
    assert ((energy - kepler_sum).abs() < 0.01 * kepler_sum.abs()).all()


def test_flyby_is_a_hyperbola_with_the_requested_pericentre_and_start() -> None:
    pos, vel, mass = scenarios.flyby(G=1.0, rng=rng(), count=32, m1=1.0, m2=0.25, q=0.3, e_min=1.2, e_max=4.0,
                                     r_start=8.0)
    assert_centre_of_mass_frame(pos, vel, mass)
    r = pos[:, 1] - pos[:, 0]
    a, e = elements(pos, vel, 0, 1, 1.25)
    torch.testing.assert_close(r.norm(dim=-1), torch.full((32,), 8.0, dtype=F64))
    assert ((r * (vel[:, 1] - vel[:, 0])).sum(-1) < 0).all()  # inbound
    assert (a < 0).all() and (e >= 1.2).all() and (e <= 4.0).all()
    torch.testing.assert_close(-a * (e - 1), torch.full((32,), 0.3, dtype=F64))  # pericentre distance q
    assert (Gravity().energy(Gravity().initialise(pos, vel, mass)) > 0).all()  # unbound


def test_flyby_reaches_pericentre_at_the_time_of_keplers_equation() -> None:
    q, e, r_start = 0.5, 1.5, 5.0
    gravity, leapfrog = Gravity(), Leapfrog()
    s = gravity.initialise(*scenarios.flyby(G=1.0, rng=rng(), q=q, e_min=e, e_max=e, r_start=r_start, dims=2))
    t_peri = scenarios.flyby_time_to_pericentre(q, e, r_start, 2.0)
    steps = 2000
    dt = torch.full((1,), t_peri / steps, dtype=F64)
    separation = []
    for _ in range(2 * steps):
        s = leapfrog.step(s, dt, gravity)
        separation.append(float((s.pos[0, 1] - s.pos[0, 0]).norm()))
    closest = min(range(len(separation)), key=separation.__getitem__)
    assert abs(closest + 1 - steps) <= 2  # pericentre passage on time, to within two steps
    assert separation[closest] == pytest.approx(q, rel=1e-4)
    assert separation[-1] == pytest.approx(r_start, rel=1e-4)  # and out again, symmetrically


@pytest.mark.parametrize("n", [8, 16, 32])
def test_plummer_cluster_is_in_virial_equilibrium(n: int) -> None:
    gravity = Gravity()
    s = gravity.initialise(*scenarios.plummer(G=1.0, rng=rng(n), count=6, n=n))
    assert s.pos.shape == (6, n, 3)
    assert_centre_of_mass_frame(s.pos, s.vel, s.mass)
    ratio = kinetic_energy(s.vel, s.mass) / gravity.potential_energy(s.pos, s.mass).abs()
    torch.testing.assert_close(ratio, torch.full((6,), 0.5, dtype=F64), rtol=1e-12, atol=0)
    assert (gravity.energy(s) < 0).all()


def test_plummer_radii_follow_the_plummer_mass_profile() -> None:
    pos, _, _ = scenarios.plummer(G=1.0, rng=rng(), count=200, n=32, radius=2.0, cutoff=10.0)
    r = pos.norm(dim=-1).flatten() / 2.0
    for fraction in (0.25, 0.5, 0.75):  # M(<r) = r^3 / (1 + r^2)^1.5, truncated at 10 scale radii
        m = fraction * 10**3 / 101**1.5
        expected = 1 / math.sqrt(m ** (-2 / 3) - 1)
        assert float(r.quantile(fraction)) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("radius", [0.0, 0.5, 2.0])
def test_plummer_velocities_have_the_plummer_dispersion(radius: float) -> None:
    v = scenarios.plummer_velocities(torch.full((40_000,), radius, dtype=F64), rng())
    v2 = (v * v).sum(-1)
    assert float(v2.mean()) == pytest.approx(0.5 / math.sqrt(1 + radius**2), rel=0.02)  # 3 sigma^2 = GM/2(r^2+a^2)^1/2
    assert float(v2.max()) < 2 / math.sqrt(1 + radius**2)  # bound: below the escape speed


@pytest.mark.parametrize(
    ("generator", "params", "match"),
    [
        (scenarios.hierarchical_triple, {"a_out": 1.4}, "outer pericentre"),
        (scenarios.hierarchical_triple, {"m3": 0.0}, "masses"),
        (scenarios.hierarchical_triple, {"phase": "later"}, "phase"),
        (scenarios.planetary_system, {"a_ratio": 0.9}, "a_ratio"),
        (scenarios.flyby, {"e_min": 0.9}, "e_min"),
        (scenarios.flyby, {"q": 20.0}, "r_start"),
        (scenarios.plummer, {"n": 1}, "n >= 2"),
        (scenarios.plummer, {"virial": 1.0}, "virial"),
    ],
)
def test_scenarios_reject_bad_parameters(generator: Callable, params: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        generator(G=1.0, rng=rng(), **params)


def test_scenarios_are_registered() -> None:
    names = get_registry().names("initial_conditions")
    assert {"hierarchical_triple", "planetary_system", "flyby", "plummer"} <= set(names)
