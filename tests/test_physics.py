"""Physics checked against physics (float64): Kepler invariants, the leapfrog's order, symmetry and
conservation laws, and the batched force kernel."""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aits.builtin.integrators import Leapfrog
from aits.physics import Gravity, Systems, initial, kepler
from aits.physics.gravity import angular_momentum, dot, kinetic_energy, momentum

F64 = torch.float64
EPS = torch.finfo(F64).eps
LEAPFROG = Leapfrog()
FIGURE_EIGHT_PERIOD = 6.32591398


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binary(gravity: Gravity = Gravity(), **params: float) -> Systems:
    return gravity.initialise(*initial.kepler_binary(G=gravity.G, rng=rng(), **params))


def evolve(
    s: Systems, dt: float | torch.Tensor, steps: int, gravity: Gravity = Gravity()
) -> tuple[Systems, torch.Tensor]:
    """``steps`` leapfrog steps of fixed ``dt``; returns the final state and the relative energy
    error after every step (steps, B)."""
    dt = torch.as_tensor(dt, dtype=F64).expand(s.batch)
    e0 = gravity.energy(s)
    errors = []
    for _ in range(steps):
        s = LEAPFROG.step(s, dt, gravity)
        errors.append(((gravity.energy(s) - e0) / e0).abs())
    return s, torch.stack(errors)


def rel_pair(s: Systems) -> tuple[torch.Tensor, torch.Tensor]:
    """Position and velocity of body 1 relative to body 0 (B, D)."""
    return s.pos[:, 1] - s.pos[:, 0], s.vel[:, 1] - s.vel[:, 0]


# ---------------------------------------------------------------- Kepler invariants

BINARIES = [  # (G, m1, m2, a, e)
    (1.0, 1.0, 1.0, 1.0, 0.5),
    (1.0, 1.0, 3.0, 2.0, 0.9),
    (1.0, 0.2, 1.5, 0.5, 0.0),
    (2.5, 2.0, 0.5, 3.0, 0.3),
]


@pytest.mark.parametrize(("G", "m1", "m2", "a", "e"), BINARIES)
def test_kepler_binary_energy_pericentre_and_speed(G: float, m1: float, m2: float, a: float, e: float) -> None:
    gravity = Gravity(G=G)
    s = binary(gravity, m1=m1, m2=m2, a=a, e=e)
    r, v = rel_pair(s)
    assert gravity.energy(s).item() == pytest.approx(-G * m1 * m2 / (2 * a), rel=1e-13)
    assert gravity.energy(s).item() == pytest.approx(kepler.orbital_energy(m1, m2, a, G), rel=1e-13)
    assert r.norm().item() == pytest.approx(a * (1 - e), rel=1e-13)
    assert v.norm().item() == pytest.approx(math.sqrt(G * (m1 + m2) * (1 + e) / (a * (1 - e))), rel=1e-13)
    assert (r * v).sum().item() == pytest.approx(0.0, abs=1e-13)  # pericentre: r is perpendicular to v
    assert kepler.period(a, m1 + m2, G) == pytest.approx(2 * math.pi * math.sqrt(a**3 / (G * (m1 + m2))))


@cache
def one_kepler_orbit(steps: int) -> tuple[Systems, Systems, float]:
    """An e = 0.5 binary (m1 = 1, m2 = 2, a = 1.5) after one period in ``steps`` fixed steps: start
    state, end state and max relative energy error."""
    start = binary(m1=1.0, m2=2.0, a=1.5, e=0.5)
    end, errors = evolve(start, kepler.period(1.5, 3.0) / steps, steps)
    return start, end, errors.max().item()


def test_binary_returns_to_pericentre_after_one_period() -> None:
    # The leapfrog's position error after a fixed time is second order in dt. Halving dt must cut the
    # miss distance ~4x: then what remains is truncation error, which vanishes as dt -> 0, so the
    # exact orbit closes. At T/1000 it is ~1e-3 a; a wrong period or force would miss by O(a).
    misses = []
    for steps in (500, 1000):
        start, end, _ = one_kepler_orbit(steps)
        misses.append((end.pos - start.pos).norm(dim=-1).max().item())
        assert end.time.item() == pytest.approx(kepler.period(1.5, 3.0), rel=1e-12)
    assert misses[1] < 2e-3 * 1.5
    assert 3.5 < misses[0] / misses[1] < 4.5


def test_leapfrog_is_second_order_in_energy() -> None:
    coarse, fine = one_kepler_orbit(500)[2], one_kepler_orbit(1000)[2]
    assert 3.5 < coarse / fine < 4.5


def test_energy_error_is_bounded_over_many_orbits() -> None:
    orbits, per_orbit = 30, 100
    s = binary(e=0.6)
    _, errors = evolve(s, kepler.period(1.0, 2.0) / per_orbit, orbits * per_orbit)
    worst = errors.view(orbits, per_orbit).amax(1)
    assert worst.max() < 0.1  # a coarse step, but the orbit stays an orbit
    assert worst[-3:].max() <= 1.05 * worst[:3].max()  # no secular drift
    assert errors[-per_orbit:].mean() <= 1.05 * errors[:per_orbit].mean()


# ---------------------------------------------------------------- symmetries of the scheme


SYSTEMS = {
    "binary_e0.9": lambda: binary(e=0.9),
    "cluster_3d": lambda: Gravity().initialise(*initial.cluster(G=1.0, rng=rng(1), count=2, n=8, dims=3)),
    "pythagorean_2d": lambda: Gravity().initialise(*initial.pythagorean(G=1.0, rng=rng())),
}


@pytest.mark.parametrize("name", SYSTEMS)
def test_leapfrog_is_time_reversible(name: str) -> None:
    start = SYSTEMS[name]()
    there, _ = evolve(start, 2e-3, 200)
    back, _ = evolve(there, -2e-3, 200)
    assert (there.pos - start.pos).abs().max() > 1e-2  # it really moved
    torch.testing.assert_close(back.pos, start.pos, rtol=0, atol=1e-12)
    torch.testing.assert_close(back.vel, start.vel, rtol=0, atol=1e-12)
    torch.testing.assert_close(back.time, start.time, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["cluster_3d", "pythagorean_2d"])
def test_momentum_and_angular_momentum_conserved(name: str) -> None:
    start = SYSTEMS[name]()
    end, _ = evolve(start, 1e-3, 500)
    assert (end.pos - start.pos).abs().max() > 1e-2
    tolerance = 100 * EPS * ((start.mass[..., None] * (start.vel.abs() + end.vel.abs())).sum() + 1.0).item()
    torch.testing.assert_close(momentum(end), momentum(start), rtol=0, atol=tolerance)
    torch.testing.assert_close(angular_momentum(end), angular_momentum(start), rtol=0, atol=tolerance)


def test_batched_steps_equal_one_by_one() -> None:
    g = Gravity(softening=0.01)
    batch = g.initialise(*initial.cluster(G=1.0, rng=rng(7), count=3, n=4))
    dt = torch.tensor([1e-3, 4e-3, -2e-3], dtype=F64)
    together, errors = evolve(batch, dt, 50, g)
    for i in range(batch.batch):
        alone, alone_errors = evolve(batch.index(slice(i, i + 1)), dt[i : i + 1], 50, g)
        for got, want in zip(together.index(slice(i, i + 1)).tensors(), alone.tensors()):
            torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(errors[:, i : i + 1], alone_errors, rtol=1e-9, atol=1e-15)


def test_figure_eight_returns_after_one_period() -> None:
    # At T/2000 the leapfrog misses by ~2e-5 (second order: ~8e-5 at T/1000); the published initial
    # conditions (8 digits) add ~1e-7. 1e-4 leaves a 5x margin, while the bodies travel ~1 in a third
    # of a period and a wrong force or initial condition would miss by O(0.1-1).
    start = Gravity().initialise(*initial.figure_eight(G=1.0, rng=rng()))
    steps = 2000
    end, errors = evolve(start, FIGURE_EIGHT_PERIOD / steps, steps)
    assert (end.pos - start.pos).norm(dim=-1).max() < 1e-4
    assert (end.vel - start.vel).norm(dim=-1).max() < 1e-4
    assert errors.max() < 1e-5


# ---------------------------------------------------------------- accelerations


def test_newtons_third_law() -> None:
    for g in (Gravity(), Gravity(G=3.0, softening=0.1)):
        s = g.initialise(*initial.cluster(G=g.G, rng=rng(2), count=4, n=7))
        total = (s.mass[..., None] * s.acc).sum(1)
        scale = (s.mass[..., None] * s.acc.abs()).sum(1)
        assert (total.abs() <= 64 * EPS * scale).all()


def two_bodies(softening: float) -> torch.Tensor:
    """Accelerations of m=2 at the origin and m=3 at (1, 2, 2) (distance 3), G = 1.5."""
    pos = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]]], dtype=F64)
    mass = torch.tensor([[2.0, 3.0]], dtype=F64)
    return Gravity(G=1.5, softening=softening).accelerations(pos, mass)[0]


def test_two_body_acceleration_by_hand() -> None:
    r = torch.tensor([1.0, 2.0, 2.0], dtype=F64)
    acc = two_bodies(0.0)
    torch.testing.assert_close(acc[0], 1.5 * 3.0 * r / 27.0, rtol=1e-15, atol=0)  # pulled towards body 1
    torch.testing.assert_close(acc[1], -1.5 * 2.0 * r / 27.0, rtol=1e-15, atol=0)


@pytest.mark.parametrize("softening", [0.1, 1.0, 10.0])
def test_softening_reduces_the_force(softening: float) -> None:
    hard, soft = two_bodies(0.0), two_bodies(softening)
    expected = 27.0 / (9.0 + softening**2) ** 1.5  # |r|^3 / (r^2 + eps^2)^(3/2)
    torch.testing.assert_close(soft, hard * expected, rtol=1e-14, atol=0)
    assert (soft.norm(dim=-1) < hard.norm(dim=-1)).all()
    pos = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]]], dtype=F64)
    potential = Gravity(G=1.5, softening=softening).potential_energy(pos, torch.tensor([[2.0, 3.0]], dtype=F64))
    assert potential.item() == pytest.approx(-1.5 * 6.0 / math.sqrt(9.0 + softening**2), rel=1e-14)


# ---------------------------------------------------------------- property test


@st.composite
def small_systems(draw: st.DrawFn) -> Systems:
    """2-5 bodies in 2 or 3 dimensions, masses 0.1-10, positions in a unit box, |v| components <= 2."""
    n, dims = draw(st.integers(2, 5)), draw(st.sampled_from([2, 3]))
    number = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
    values = lambda lo, hi, k: draw(st.lists(number(lo, hi), min_size=k, max_size=k))  # noqa: E731
    mass = torch.tensor(values(0.1, 10.0, n), dtype=F64)[None]
    pos = torch.tensor(values(-1.0, 1.0, n * dims), dtype=F64).view(1, n, dims)
    vel = torch.tensor(values(-2.0, 2.0, n * dims), dtype=F64).view(1, n, dims)
    separation = (pos[:, :, None] - pos[:, None]).norm(dim=-1) + torch.eye(n, dtype=F64)
    assume(separation.min() > 0.05)
    return Gravity().initialise(pos, vel, mass)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=small_systems())
def test_one_small_step_conserves_momentum_and_energy(s: Systems) -> None:
    g = Gravity()
    _, r2 = g.separations(s.pos)
    r_min = r2.masked_fill(torch.eye(s.bodies, dtype=torch.bool), float("inf")).amin().sqrt()
    crossing = r_min / s.vel.norm(dim=-1).max().clamp_min(1e-12)
    dt = 1e-4 * torch.minimum(g.freefall_time(s.pos, s.mass), crossing)
    new = LEAPFROG.step(s, dt, g)
    p_scale = (s.mass[..., None] * (s.vel.abs() + new.vel.abs())).sum()
    assert ((momentum(new) - momentum(s)).abs() <= 64 * EPS * p_scale).all()
    energy_scale = kinetic_energy(s.vel, s.mass) + g.potential_energy(s.pos, s.mass).abs()  # |E| itself may be ~0
    assert ((g.energy(new) - g.energy(s)).abs() <= 1e-6 * energy_scale).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_the_written_out_dot_product_is_the_reduction_bit_for_bit_with_its_gradient(dims: int) -> None:
    gen = torch.Generator().manual_seed(dims)
    x, y = (torch.randn(16, 8, 8, dims, dtype=torch.float64, generator=gen) * 1e3 for _ in range(2))
    assert torch.equal(dot(x, y), (x * y).sum(-1))
    x.requires_grad_()
    assert torch.equal(dot(x, y), (x * y).sum(-1))
    (grad,) = torch.autograd.grad(dot(x, y).sum(), x)
    torch.testing.assert_close(grad, y, rtol=0, atol=0)
