"""The built-in losses: their shape in log10(error), and the direction they push a real step."""

from __future__ import annotations

import math

import pytest
import torch

from aits import registry
from aits.builtin.integrators import Leapfrog
from aits.physics import Gravity
from aits.physics.gravity import relative_energy_error
from aits.physics.initial import kepler_binary
from conftest import small_config

TRAINING = small_config().training  # E_lower 1e-6, E_upper 1e-4


def loss(name: str):
    return registry.get_registry().get("loss", name)


def test_energy_target_is_zero_only_at_the_geometric_centre_of_the_band_and_even_in_log_error():
    centre = math.sqrt(TRAINING.E_lower * TRAINING.E_upper)
    errors = torch.tensor([centre, centre * 10, centre / 10, centre * 100], dtype=torch.float64)
    values = loss("energy_target")(errors, TRAINING)
    assert values[0] == pytest.approx(0, abs=1e-24)
    assert values[1] == pytest.approx(1.0) and values[2] == pytest.approx(1.0)  # one decade either side
    assert values[3] == pytest.approx(4.0)


def test_energy_band_is_flat_inside_the_band_and_target_is_not():
    inside = torch.tensor([2e-6, 1e-5, 5e-5], dtype=torch.float64)
    assert torch.all(loss("energy_band")(inside, TRAINING) == 0)
    assert torch.all(loss("energy_target")(inside[[0, 2]], TRAINING) > 0)


@pytest.mark.parametrize("dt, direction", [(1e-4, "up"), (0.2, "down")])
def test_energy_target_gradient_moves_a_kepler_step_towards_the_target_error(dt: float, direction: str):
    # at pericentre of an e = 0.5 orbit, dt = 1e-4 gives |dE/E| far below 1e-5 and dt = 0.2 far above
    gravity = Gravity()
    s = gravity.initialise(*kepler_binary(G=1.0, rng=torch.Generator(), e=0.5))
    log_dt = torch.tensor([math.log(dt)], dtype=torch.float64, requires_grad=True)
    new = Leapfrog().step(s, log_dt.exp(), gravity)
    error = relative_energy_error(gravity.energy(new), gravity.energy(s))
    assert (error < 1e-6) if direction == "up" else (error > 1e-4)
    loss("energy_target")(error, TRAINING).sum().backward()
    descent = -log_dt.grad
    assert descent > 0 if direction == "up" else descent < 0


def _one_orbit(choose_dt) -> tuple[int, float]:
    """Steps and max |dE/E0| over one period of an e = 0.5 Kepler binary (a = 1, M = 2), leapfrog."""
    gravity, leapfrog = Gravity(), Leapfrog()
    s = gravity.initialise(*kepler_binary(G=1.0, rng=torch.Generator(), e=0.5))
    e0, period = gravity.energy(s), 2 * math.pi / math.sqrt(2.0)
    steps, worst = 0, 0.0
    while float(s.time) < period:
        s = leapfrog.step(s, choose_dt(s).clamp(max=period - float(s.time)), gravity)
        steps += 1
        worst = max(worst, float(relative_energy_error(gravity.energy(s), e0)))
    return steps, worst


def test_an_equal_error_in_every_step_beats_the_free_fall_rule_at_equal_accuracy():
    # the rationale of energy_target: for 2nd-order leapfrog steps * sqrt(max error) is independent of
    # the accuracy setting, and holding the per-step error equal makes it markedly smaller
    gravity, leapfrog = Gravity(), Leapfrog()
    fractions = torch.logspace(-3, 0, 61, dtype=torch.float64)

    def equal_error(s):  # the largest trial step (a fraction of tau) with per-step |dE/E| <= 1e-6
        trials = s.index(torch.zeros(len(fractions), dtype=torch.long))
        dts = gravity.freefall_time(s.pos, s.mass) * fractions
        error = relative_energy_error(gravity.energy(leapfrog.step(trials, dts, gravity)), gravity.energy(trials))
        return dts[(error <= 1e-6).nonzero().max()].reshape(1)

    def free_fall(s):
        return 0.02 * gravity.freefall_time(s.pos, s.mass)

    (n_equal, err_equal), (n_ff, err_ff) = _one_orbit(equal_error), _one_orbit(free_fall)
    assert 0.5 < n_equal / n_ff < 2  # comparable settings, so the invariant compares like with like
    assert n_equal * math.sqrt(err_equal) < 0.8 * n_ff * math.sqrt(err_ff)  # measured 0.72
