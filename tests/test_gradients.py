"""Gradients through one integrator step: the closed-form derivative of the leapfrog step against
autograd and against finite differences, the autograd fallback of integrators without a closed form
(the yoshida4 plugin, one defined here), and training with each."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

from aits.builtin.integrators import Leapfrog
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems, blocks
from aits.physics.initial import cluster, kepler_binary
from aits.training.build import build_trainer
from aits.training.trainer import Trainer
from conftest import small_config

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "aits-yoshida" / "src"


class DriftKickDrift(Integrator):
    """A third-party-style integrator without a closed form: drift-kick-drift leapfrog."""

    name = "dkd"
    order = 2
    force_evaluations = 1

    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        h = dt[:, None, None]
        mid = s.pos + 0.5 * h * s.vel
        vel = s.vel + h * gravity.accelerations(mid, s.mass)
        pos = mid + 0.5 * h * vel
        return Systems(pos, vel, s.mass, gravity.accelerations(pos, s.mass), s.time + dt)


class NaiveKDK(Integrator):
    """The built-in leapfrog's step without its closed form: autograd through the pair tensors."""

    name = "naive_kdk"
    order = 2
    force_evaluations = 1

    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        return Leapfrog().step(s, dt, gravity)


@pytest.fixture
def yoshida4(monkeypatch: pytest.MonkeyPatch) -> Integrator:
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    monkeypatch.delitem(sys.modules, "aits_yoshida", raising=False)
    return importlib.import_module("aits_yoshida").Yoshida4()


def systems(gravity: Gravity, n: int, dims: int = 3, count: int = 6) -> Systems:
    rng = torch.Generator().manual_seed(n)
    bodies = kepler_binary(G=gravity.G, rng=rng, e=0.8, dims=dims, count=count) if n == 2 else \
        cluster(G=gravity.G, rng=rng, n=n, dims=dims, count=count)
    return gravity.initialise(*bodies)


def loss_of(new: Systems, energy: torch.Tensor, e0: torch.Tensor) -> torch.Tensor:
    """Every output of a step: the log energy error (as training uses it) and the state."""
    weights = torch.linspace(0.5, 1.5, len(e0), dtype=e0.dtype)
    rel = (energy - e0).abs() / e0.abs()
    return (weights * rel.log10()).sum() + new.pos.sum() + (new.vel**2).sum() + new.acc.sum() + new.time.sum()


def gradient(integrator: Integrator, s: Systems, dt: torch.Tensor, gravity: Gravity, closed: bool) -> torch.Tensor:
    dt = dt.clone().requires_grad_()
    if closed:
        new, energy = integrator.step_with_energy(s, dt, gravity)
    else:
        new = integrator.step(s, dt, gravity)
        energy = gravity.energy(new)
    return torch.autograd.grad(loss_of(new, energy, gravity.energy(s)), dt)[0]


def freefall(s: Systems, gravity: Gravity, fraction: float) -> torch.Tensor:
    return fraction * gravity.freefall_time(s.pos, s.mass) * torch.linspace(0.5, 1.0, s.batch, dtype=s.pos.dtype)


@pytest.mark.parametrize(("n", "dims", "softening"), [(2, 3, 0.0), (2, 2, 0.2), (5, 3, 0.0), (7, 2, 0.05)])
def test_leapfrog_closed_form_forward_is_the_step_and_its_gradient_is_autograds(n: int, dims: int,
                                                                              softening: float) -> None:
    gravity = Gravity(1.3, softening)
    s = systems(gravity, n, dims)
    dt = freefall(s, gravity, 0.05)
    new, energy = Leapfrog().step_with_energy(s, dt, gravity)
    reference = Leapfrog().step(s, dt, gravity)
    assert all(torch.equal(a, b) for a, b in zip(new.tensors(), reference.tensors()))
    assert torch.equal(energy, gravity.energy(reference))
    closed, auto = (gradient(Leapfrog(), s, dt, gravity, c) for c in (True, False))
    # dE1/dh is a small difference of terms of size sum m |v1| |a1|: both sides round there
    e0 = gravity.energy(s)
    scale = (s.mass * reference.vel.norm(dim=-1) * reference.acc.norm(dim=-1)).sum(1) / (energy - e0).abs()
    assert ((closed - auto).abs() <= 1e-14 * (scale + auto.abs())).all(), (closed, auto)


def test_blocks_of_systems_give_the_numbers_of_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    gravity = Gravity(1.0, 0.05)
    s = systems(gravity, 6, count=40)
    dt = freefall(s, gravity, 0.05)
    whole = [gradient(Leapfrog(), s, dt, gravity, closed=True), *Leapfrog().step_with_energy(s, dt, gravity)[0].tensors()]
    monkeypatch.setattr(blocks, "BLOCK_PAIRS", 7 * 36)  # blocks of 7 systems, the last one of 5
    blocked = [gradient(Leapfrog(), s, dt, gravity, closed=True), *Leapfrog().step_with_energy(s, dt, gravity)[0].tensors()]
    assert all(torch.equal(a, b) for a, b in zip(whole, blocked))


def test_leapfrog_energy_derivative_matches_finite_differences() -> None:
    """Against physics alone: dE1/dh of the step against a central difference of E1(h)."""
    gravity = Gravity()
    s = systems(gravity, 4)
    dt = freefall(s, gravity, 0.2).requires_grad_()
    _, energy = Leapfrog().step_with_energy(s, dt, gravity)
    (closed,) = torch.autograd.grad(energy.sum(), dt)
    delta = 1e-5 * dt.detach()
    plus, minus = (gravity.energy(Leapfrog().step(s, dt.detach() + d, gravity)) for d in (delta, -delta))
    torch.testing.assert_close(closed, (plus - minus) / (2 * delta), rtol=1e-6, atol=0)


def test_leapfrog_falls_back_to_autograd_when_the_state_needs_a_gradient() -> None:
    gravity = Gravity()
    s = systems(gravity, 3)
    pos = s.pos.clone().requires_grad_()
    dt = freefall(s, gravity, 0.05).requires_grad_()
    new, energy = Leapfrog().step_with_energy(s.with_(pos=pos), dt, gravity)
    grad_pos, grad_dt = torch.autograd.grad(energy.sum(), (pos, dt))
    reference = Leapfrog().step(s.with_(pos=pos), dt, gravity)
    expected = torch.autograd.grad(gravity.energy(reference).sum(), (pos, dt))
    assert torch.equal(grad_pos, expected[0]) and torch.equal(grad_dt, expected[1])


def test_closed_form_under_torch_func_grad_equals_autograd() -> None:
    """The compiled training step differentiates with torch.func.grad."""
    gravity = Gravity()
    s = systems(gravity, 4)
    dt = freefall(s, gravity, 0.05)
    e0 = gravity.energy(s)
    via_func = torch.func.grad(lambda h: loss_of(*Leapfrog().step_with_energy(s, h, gravity), e0))(dt)
    assert torch.equal(via_func, gradient(Leapfrog(), s, dt, gravity, closed=True))


@pytest.mark.parametrize("which", ["yoshida4", "third-party"])
def test_integrators_without_a_closed_form_use_autograd(request: pytest.FixtureRequest, which: str) -> None:
    integrator = request.getfixturevalue("yoshida4") if which == "yoshida4" else DriftKickDrift()
    assert type(integrator).step_with_energy is Integrator.step_with_energy
    gravity = Gravity(1.0, 0.1)
    s = systems(gravity, 5)
    dt = freefall(s, gravity, 0.05)
    assert torch.equal(gradient(integrator, s, dt, gravity, closed=True),
                       gradient(integrator, s, dt, gravity, closed=False))


def train(integrator: Integrator | None, *overrides: str) -> Trainer:
    trainer = build_trainer(small_config("training.epochs=2", *overrides))
    if integrator is not None:
        trainer.stepper.integrator = integrator
    for _ in range(2):
        trainer.run_epoch()
    return trainer


def test_training_with_the_closed_form_equals_autograd_training_to_rounding() -> None:
    """The same leapfrog with its closed form and through autograd: the same accepted steps and
    weights equal to rounding after two epochs (the gradients differ in their last bits only)."""
    closed, auto = train(None), train(NaiveKDK())
    assert [m["part1"]["accepted"] for m in closed.metrics] == [m["part1"]["accepted"] for m in auto.metrics]
    assert closed.counters == auto.counters
    for a, b in zip(closed.policy.parameters(), auto.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert closed.counters.optimizer_steps > 0


@pytest.mark.parametrize("which", ["yoshida4", "third-party"])
def test_training_with_integrators_without_a_closed_form(request: pytest.FixtureRequest, which: str) -> None:
    integrator = request.getfixturevalue("yoshida4") if which == "yoshida4" else DriftKickDrift()
    trainer = train(integrator)
    before = build_trainer(small_config()).policy.state_dict()
    assert trainer.counters.optimizer_steps > 0
    assert any(not torch.equal(p, before[k]) for k, p in trainer.policy.state_dict().items())
    assert all(math.isfinite(m["part1"]["rel_dE_max"]) for m in trainer.metrics)
