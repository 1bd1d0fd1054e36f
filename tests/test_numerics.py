"""Numerical faults: a policy output or an integration that yields NaN/inf is a rejected step with a
bounded penalty, the weights never become NaN, a zero-softening close encounter does not crash — and
property tests of the physics core's invariants over random systems."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aits.builtin.integrators import Leapfrog
from aits.config import load_config
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems
from aits.physics.gravity import angular_momentum, kinetic_energy, momentum
from aits.training.build import build_trainer
from aits.training.trainer import Trainer

F64 = torch.float64
EPS = torch.finfo(F64).eps
BASE = ["system.params.count=8", "training.max_generalize_iters=3", "training.replay_batch_size=64",
        "training.replay_capacity=2000", "model.hidden=[16]"]
BAD_VALUES = [math.nan, math.inf, -math.inf]


def trainer(*overrides: str) -> Trainer:
    return build_trainer(load_config(None, [*BASE, *overrides]))


def weights_finite(t: Trainer) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in t.policy.parameters())


def weights(t: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in t.policy.parameters()]


def assert_run_is_sane(t: Trainer) -> None:
    """Weights, live states, energies and every recorded sample are finite."""
    assert weights_finite(t)
    assert all(bool(torch.isfinite(x).all()) for x in t.population.systems.tensors())
    assert bool(torch.isfinite(t.population.energy).all())
    n = t.population.buffer.size
    for name, data in t.population.buffer.data.items():
        assert bool(torch.isfinite(data[:n]).all()), name
    for state in t.optimizer.state.values():
        assert all(bool(torch.isfinite(v).all()) for v in state.values() if isinstance(v, torch.Tensor))


class SpoiledPolicy:
    """Wraps the policy: on the calls chosen by ``when``, rows ``rows`` get ``dt`` replaced by ``value``
    (and, with ``spoil_ratio``, the predicted log ratio too)."""

    def __init__(self, t: Trainer, value: float, rows: slice = slice(0, 2), when=lambda call: call % 2 == 0,
                 spoil_ratio: bool = False) -> None:
        self.forward, self.value, self.rows, self.when, self.spoil_ratio = t.policy.forward, value, rows, when, spoil_ratio
        self.calls = self.spoiled = 0

    def __call__(self, s: Systems, history: torch.Tensor, population: int | None = None,
                 cached: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        dt, log_ratio = self.forward(s, history, population, cached)
        call, self.calls = self.calls, self.calls + 1
        if self.when(call) and dt.numel():
            dt = dt.clone()
            dt[self.rows] = self.value
            if self.spoil_ratio:
                log_ratio = log_ratio.clone()
                log_ratio[self.rows] = self.value
            self.spoiled += 1
        return dt, log_ratio


# --------------------------------------------------------------------------- forced NaN/inf policy outputs


@pytest.mark.parametrize("value", BAD_VALUES + [1e6], ids=["nan", "inf", "-inf", "huge"])
def test_nonfinite_or_huge_policy_dt_is_rejected_and_weights_stay_finite(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    t = trainer("training.epochs=3")
    spoiled = SpoiledPolicy(t, value)
    monkeypatch.setattr(t.policy, "forward", spoiled)
    for _ in range(3):
        metrics = t.run_epoch()
        p1 = metrics["part1"]
        assert p1["accepted"] == 8 * t.config.training.steps_per_epoch
        assert p1["rel_dE_max"] < t.config.training.energy_threshold  # nothing bad got through the gate
    assert spoiled.spoiled > 0
    assert sum(m["part1"]["rejected"] for m in t.metrics) > 0
    if not math.isfinite(value):
        assert t.counters.nonfinite_steps > 0
    assert_run_is_sane(t)


@pytest.mark.parametrize("value", BAD_VALUES)
def test_nonfinite_log_ratio_never_reaches_the_weights(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    """Even a network output that is itself NaN/inf (not just dt) leaves the weights finite."""
    t = trainer("training.epochs=2")
    monkeypatch.setattr(t.policy, "forward", SpoiledPolicy(t, value, spoil_ratio=True))
    for _ in range(2):
        t.run_epoch()
    assert_run_is_sane(t)


@pytest.mark.parametrize("value", BAD_VALUES + [1e6], ids=["nan", "inf", "-inf", "huge"])
def test_penalty_for_a_nonfinite_step_is_bounded_and_pushes_dt_down(value: float) -> None:
    t = trainer()
    s, history = t.population.systems, t.population.history
    t.policy.forward = SpoiledPolicy(t, value, rows=slice(0, 3), when=lambda call: call == 0)
    r = t.stepper.evaluate(s, t.population.energy, history)
    del t.policy.forward
    bad = torch.zeros(s.batch, dtype=torch.bool)
    bad[:3] = True
    if value == 1e6:
        assert not bool((r.finite[:3] & (r.rel_dE[:3] < t.config.training.energy_threshold)).any())
        return  # a huge but finite dt is an ordinary (large) error, handled by the loss
    assert not bool(r.finite[:3].any()) and bool(r.finite[3:].all())
    losses = t.stepper.sample_losses(r)
    assert bool(torch.isfinite(losses).all())
    penalty = t.config.training.nonfinite_penalty
    assert torch.allclose(losses[bad], torch.full((3,), penalty, dtype=F64))
    assert bool((losses[~bad] < penalty).all())
    # the penalty's gradient lowers the predicted dt of the rows that failed
    before, _ = t.policy(s, history)
    t.executors.eager.optimise(losses[bad].mean())
    after, _ = t.policy(s, history)
    assert bool((after[:3] < before[:3]).all())
    assert weights_finite(t)


def test_nonfinite_gradient_is_skipped_and_weights_unchanged() -> None:
    t = trainer()
    before = weights(t)
    steps = t.counters.optimizer_steps
    first = next(t.policy.parameters())
    t.executors.eager.optimise((first * math.nan).sum())
    t.executors.eager.optimise((first * math.inf).sum())
    assert t.counters.optimizer_steps == steps
    assert all(torch.equal(a, b) for a, b in zip(before, weights(t)))
    # and an ordinary loss still trains
    t.executors.eager.optimise((first**2).sum())
    assert t.counters.optimizer_steps == steps + 1
    assert not all(torch.equal(a, b) for a, b in zip(before, weights(t)))


# --------------------------------------------------------------------------- forced NaN/inf integrations


@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("field", ["pos", "vel"])
def test_integration_producing_nonfinite_states_is_rejected(monkeypatch: pytest.MonkeyPatch, value: float, field: str) -> None:
    t = trainer("training.epochs=2")
    step = t.integrator.step
    first_dt: dict[tuple[float, ...], float] = {}  # state -> the dt it was first stepped with

    def spoiled(s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        """Every even row blows up the first time its state is stepped, and again whenever it is stepped
        with that same dt (a deterministic fault); a retry with a retrained dt goes through."""
        new = step(s, dt, gravity)
        rows = []
        for i in range(0, s.batch, 2):
            state = tuple(s.pos[i].flatten().tolist()) + tuple(s.vel[i].flatten().tolist())
            if first_dt.setdefault(state, float(dt[i])) == float(dt[i]):
                rows.append(i)
        if rows:
            x = getattr(new, field).clone()
            x[rows, 0] = value
            new = new.with_(**{field: x})
        return new

    monkeypatch.setattr(t.integrator, "step", spoiled)
    # training steps through step_with_energy: its autograd default, which calls the spoiled step
    monkeypatch.setattr(t.integrator, "step_with_energy", partial(Integrator.step_with_energy, t.integrator))
    for _ in range(2):
        metrics = t.run_epoch()
        assert metrics["part1"]["accepted"] == 8 * t.config.training.steps_per_epoch
    assert t.counters.nonfinite_steps > 0
    assert sum(m["part1"]["rejected"] for m in t.metrics) > 0
    assert_run_is_sane(t)


def test_nan_energy_from_the_integrator_is_rejected_in_part2(monkeypatch: pytest.MonkeyPatch) -> None:
    t = trainer("training.epochs=1")
    t.collect()
    step = t.integrator.step

    def all_nan(s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        new = step(s, dt, gravity)
        return new.with_(pos=torch.full_like(new.pos, math.nan))

    monkeypatch.setattr(t.integrator, "step", all_nan)
    # training steps through step_with_energy: its autograd default, which calls the spoiled step
    monkeypatch.setattr(t.integrator, "step_with_energy", partial(Integrator.step_with_energy, t.integrator))
    stats = t.generalize()
    assert stats["gate_pass_rate"] == 0.0 and stats["pass_rate"] == 0.0 and not stats["converged"]
    assert_run_is_sane(t)


# --------------------------------------------------------------------------- zero-softening close encounters


def test_close_encounter_with_zero_softening_does_not_crash() -> None:
    # e = 0.999 binaries start at pericentre: separation 1e-3 of the semi-major axis, no softening
    t = trainer("system.generator=kepler_binary", "system.params={e: 0.999, count: 4}", "physics.softening=0",
                "training.steps_per_epoch=8")
    for _ in range(3):
        metrics = t.run_epoch()
        assert metrics["part1"]["rel_dE_max"] < t.config.training.energy_threshold
    assert t.population.buffer.size > 0
    assert_run_is_sane(t)


def test_exact_collision_with_zero_softening_is_a_rejected_step(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # two unit masses at rest at x = -0.5 and +0.5: one kick-drift-kick step of dt = 1 puts both at x = 0
    path = tmp_path / "head_on.npy"
    np.save(path, np.array([[1.0, -0.5, 0, 0, 0, 0, 0], [1.0, 0.5, 0, 0, 0, 0, 0]]))
    t = trainer("system.generator=from_file", f"system.params={{path: {path}, count: 2}}", "physics.softening=0",
                "training.steps_per_epoch=3")
    collided = Leapfrog().step(t.population.systems, torch.ones(2, dtype=F64), t.gravity)
    assert bool((collided.pos == 0).all())  # the set-up really is an exact collision
    assert not bool(torch.isfinite(t.gravity.energy(collided)).all())
    spoiled = SpoiledPolicy(t, 1.0, rows=slice(0, 1), when=lambda call: call < 3)
    monkeypatch.setattr(t.policy, "forward", spoiled)
    metrics = t.run_epoch()
    assert metrics["part1"]["accepted"] == 2 * 3 and metrics["part1"]["rejected"] >= 1
    assert t.counters.nonfinite_steps >= 1
    assert_run_is_sane(t)


# --------------------------------------------------------------------------- property tests (physics core)


@st.composite
def systems(draw: st.DrawFn, min_separation: float = 0.05) -> Systems:
    """One system: 2-6 bodies in 2 or 3 dimensions, masses 0.01-10, positions in a box of size 1-100."""
    n, dims = draw(st.integers(2, 6)), draw(st.sampled_from([2, 3]))
    size = draw(st.sampled_from([1.0, 10.0, 100.0]))
    number = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
    values = lambda lo, hi, k: draw(st.lists(number(lo, hi), min_size=k, max_size=k))  # noqa: E731
    mass = torch.tensor(values(0.01, 10.0, n), dtype=F64)[None]
    pos = size * torch.tensor(values(-1.0, 1.0, n * dims), dtype=F64).view(1, n, dims)
    vel = torch.tensor(values(-2.0, 2.0, n * dims), dtype=F64).view(1, n, dims)
    gaps = (pos[:, :, None] - pos[:, None]).norm(dim=-1) + torch.eye(n, dtype=F64) * size
    assume(float(gaps.min()) > min_separation * size)
    return Gravity().initialise(pos, vel, mass)


def _scales(s: Systems, g: Gravity) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p = (s.mass[..., None] * s.vel.abs()).sum()
    r = s.pos.norm(dim=-1)
    l_scale = (s.mass * r * s.vel.norm(dim=-1)).sum()
    e_scale = kinetic_energy(s.vel, s.mass) + g.potential_energy(s.pos, s.mass).abs()  # |E| itself may be ~0
    return p, l_scale, e_scale


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@PROPERTY
@given(s=systems(), softening=st.sampled_from([0.0, 0.01]), steps=st.integers(5, 40))
def test_many_small_steps_conserve_momentum_angular_momentum_and_energy(s: Systems, softening: float, steps: int) -> None:
    g = Gravity(softening=softening)
    s = g.initialise(s.pos, s.vel, s.mass)
    leapfrog = Leapfrog()
    dt = 2e-4 * g.freefall_time(s.pos, s.mass)
    p0, l0, e0 = momentum(s), angular_momentum(s), g.energy(s)
    p_scale, l_scale, e_scale = _scales(s, g)
    new = s
    for _ in range(steps):
        new = leapfrog.step(new, dt, g)
    p_end, l_end, e_end = _scales(new, g)
    tol = 200 * steps * EPS
    assert float((momentum(new) - p0).abs().max()) <= tol * float(max(p_scale, p_end))
    assert float((angular_momentum(new) - l0).abs().max()) <= tol * float(max(l_scale, l_end))
    assert float((g.energy(new) - e0).abs().max()) <= 1e-6 * float(max(e_scale, e_end))


@PROPERTY
@given(s=systems(), data=st.data())
def test_energy_is_invariant_under_rotation_translation_and_relabelling(s: Systems, data: st.DataObject) -> None:
    g = Gravity()
    d = s.dims
    q, _ = torch.linalg.qr(torch.tensor(data.draw(st.lists(st.floats(-1, 1), min_size=d * d, max_size=d * d)),
                                        dtype=F64).view(d, d) + 3 * torch.eye(d, dtype=F64))
    shift = torch.tensor(data.draw(st.lists(st.floats(-50, 50), min_size=d, max_size=d)), dtype=F64)
    order = torch.tensor(data.draw(st.permutations(range(s.bodies))))
    moved = g.initialise((s.pos @ q.T + shift)[:, order], (s.vel @ q.T)[:, order], s.mass[:, order])
    scale = float(_scales(s, g)[2])
    assert abs(float(g.energy(moved) - g.energy(s))) <= 1e-12 * scale
    # forces rotate with the system and still sum to zero (Newton's third law)
    assert torch.allclose(moved.acc, (s.acc @ q.T)[:, order], rtol=1e-9, atol=1e-12 * float(s.acc.abs().max()))
    total = (moved.mass[..., None] * moved.acc).sum(1)
    assert float(total.abs().max()) <= 1e-12 * float((moved.mass[..., None] * moved.acc.abs()).sum())


@PROPERTY
@given(s=systems(), length=st.floats(1e-3, 1e3), mass=st.floats(1e-3, 1e3))
def test_energy_and_time_scale_follow_the_units(s: Systems, length: float, mass: float) -> None:
    """Lengths x L and masses x M (G fixed): velocities scale by sqrt(M/L), energies by M^2/L, times by
    sqrt(L^3/M)."""
    g = Gravity()
    v = math.sqrt(mass / length)
    scaled = g.initialise(s.pos * length, s.vel * v, s.mass * mass)
    assert torch.allclose(g.energy(scaled), g.energy(s) * mass**2 / length, rtol=1e-9,
                          atol=1e-12 * float(_scales(scaled, g)[2]))
    assert torch.allclose(g.freefall_time(scaled.pos, scaled.mass),
                          g.freefall_time(s.pos, s.mass) * math.sqrt(length**3 / mass), rtol=1e-10)


@PROPERTY
@given(s=systems(min_separation=0.0), log_dt=st.floats(-12, 12), sign=st.sampled_from([1.0, -1.0]),
       gap=st.sampled_from([0.0, 1e-300, 1e-150, 1e-12]))
def test_any_step_of_any_system_is_finite_or_flagged_never_an_exception(s: Systems, log_dt: float, sign: float, gap: float) -> None:
    """Zero softening, bodies as close as ``gap`` (0: on top of each other), any step size: the trainer's
    one-step evaluation never raises, and a state it calls finite is finite."""
    pos = s.pos.clone()
    pos[0, 1] = pos[0, 0] + gap
    t = _bare_trainer()
    s = Systems(pos, s.vel, s.mass, t.gravity.accelerations(pos, s.mass), s.time)
    energy = t.gravity.energy(s)
    assume(bool(torch.isfinite(energy).all()) and float(energy.abs().min()) > 0)
    r = t.stepper.step(s, energy, torch.full((1,), sign * 10**log_dt, dtype=F64), torch.zeros(1, dtype=F64))
    if bool(r.finite[0]):
        assert all(bool(torch.isfinite(x).all()) for x in (r.new.pos, r.new.vel, r.energy, r.rel_dE))
    losses = t.stepper.sample_losses(r)
    assert bool(torch.isfinite(losses).all())
    if not bool(r.finite[0]):
        assert float(losses[0]) == t.config.training.nonfinite_penalty
    else:  # the band loss on log10 |dE/E|: finite for any finite error, however large
        assert float(losses[0]) <= (308.3 - math.log10(t.config.training.E_upper)) ** 2


_TRAINER: list[Trainer] = []


def _bare_trainer() -> Trainer:
    if not _TRAINER:
        _TRAINER.append(trainer("physics.softening=0"))
    return _TRAINER[0]
