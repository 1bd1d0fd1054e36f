"""The built-in dt policies: each formula against values computed by hand, the analytic derivatives
of the acceleration against finite differences along a true trajectory, the learned policy."""

from __future__ import annotations

import math

import pytest
import torch

from aits import registry
from aits.builtin.integrators import Leapfrog
from aits.builtin.policies import Aarseth, FixedDt, FreeFall, Learned, SymmetricFreeFall
from aits.config import ModelConfig
from aits.errors import UserError
from aits.model import Policy
from aits.physics import Gravity
from aits.physics.derivatives import derivatives
from aits.physics.initial import figure_eight, kepler_binary
from plugin_fakes import SymplecticEuler

LEAPFROG = Leapfrog()


def state(pos, vel, mass, gravity=Gravity()):
    t = lambda x: torch.tensor([x], dtype=torch.float64)  # noqa: E731
    return gravity.initialise(t(pos), t(vel), t(mass))


def value(x: float) -> torch.Tensor:
    return torch.tensor([x], dtype=torch.float64)


def test_every_builtin_policy_is_registered_with_its_parameter():
    plugins = registry.get_registry()
    expected = {"fixed": "dt", "freefall": "eta", "freefall_symmetric": "eta", "aarseth": "eta", "learned": "scale"}
    for name, parameter in expected.items():
        assert plugins.get("policy", name).parameter == parameter


def test_fixed_returns_its_dt_for_each_system():
    s = state([[0.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]], [1.0, 1.0])
    s = s.index(torch.zeros(3, dtype=torch.long))
    dts = torch.tensor([0.1, 0.02, 0.003], dtype=torch.float64)
    assert torch.equal(FixedDt(dts, Gravity(), LEAPFROG).dt(s), dts)


@pytest.mark.parametrize("bad", [0.0, -1e-3, math.inf, math.nan])
def test_a_parameter_that_is_not_positive_and_finite_is_a_user_error(bad):
    with pytest.raises(UserError, match="eta must be"):
        FreeFall(value(bad), Gravity(), LEAPFROG)


# Three bodies at (0,0), (1,0), (0,2) with masses 1, 1, 2: pair free-fall times sqrt(r^3 / G M) are
# sqrt(1/2) = 0.70711, sqrt(8/3) = 1.63299 and sqrt(5^1.5/3) = 1.93060 (for G = 1).
TRIANGLE = ([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], [[0.0, 0.0]] * 3, [1.0, 1.0, 2.0])


@pytest.mark.parametrize(("G", "softening", "expected"), [
    (1.0, 0.0, 0.1 * math.sqrt(1 / 2)),
    (2.0, 0.0, 0.1 * math.sqrt(1 / 4)),
    (1.0, 0.5, 0.1 * math.sqrt(1.25**1.5 / 2)),  # softened r^2 = 1 + 0.25
])
def test_freefall_is_eta_times_the_shortest_pair_freefall_time(G, softening, expected):
    gravity = Gravity(G, softening)
    s = state(*TRIANGLE, gravity=gravity)
    assert FreeFall(value(0.1), gravity, LEAPFROG).dt(s).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("predictor", ["drift", "step"])
def test_symmetric_freefall_iterates_the_average_of_both_ends(predictor):
    # Two unit masses at rest, 1 apart: after a step dt they are 1 - dt^2 apart (relative
    # acceleration 2), so the fixed-point map is dt -> eta (tau(1) + tau(1 - dt^2)) / 2.
    s = state([[0.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0])
    eta = 0.5
    tau = lambda r: math.sqrt(r**3 / 2)  # noqa: E731
    dt = eta * tau(1.0)
    for _ in range(2):
        dt = eta * (tau(1.0) + tau(1.0 - dt**2)) / 2
    assert dt == pytest.approx(0.326872, abs=1e-6)
    policy = SymmetricFreeFall(value(eta), Gravity(), LEAPFROG, iterations=2, predictor=predictor)
    assert policy.dt(s).item() == pytest.approx(dt, rel=1e-12)
    assert policy.force_evaluations_per_step == (1 if predictor == "drift" else 3)


def test_symmetric_freefall_takes_trial_steps_with_integrators_without_free_end_positions():
    euler = SymplecticEuler()  # declares no free end positions
    policy = SymmetricFreeFall(value(0.1), Gravity(), euler, iterations=3)
    assert policy.force_evaluations_per_step == 4  # auto: a full trial step per iteration
    s = state(*TRIANGLE)
    tau = lambda x: Gravity().freefall_time(x, s.mass)  # noqa: E731
    dt = 0.1 * tau(s.pos)
    for _ in range(3):
        dt = 0.05 * (tau(s.pos) + tau(euler.step(s, dt, Gravity()).pos))
    torch.testing.assert_close(policy.dt(s), dt, rtol=1e-14, atol=0)
    with pytest.raises(UserError, match="predictor drift needs an integrator with free end positions; "
                                        "symplectic_euler has none"):
        SymmetricFreeFall(value(0.1), Gravity(), euler, predictor="drift")


def test_leapfrog_end_positions_are_its_steps_without_a_force_evaluation():
    gravity = Gravity()
    s = state(*TRIANGLE, gravity=gravity).index(torch.zeros(2, dtype=torch.long))
    dt = torch.tensor([0.1, 0.03], dtype=torch.float64)
    assert LEAPFROG.free_end_positions
    assert torch.equal(LEAPFROG.end_positions(s, dt, gravity), LEAPFROG.step(s, dt, gravity).pos)


def test_aarseth_on_a_circular_binary_is_sqrt_eta_over_omega():
    # On a circle |a| : |a1| : |a2| : |a3| = w^2 : w^3 : w^4 : w^5 (times r), so the criterion gives
    # sqrt(eta) / w; unit masses 1 apart have w = sqrt(G M / a^3) = sqrt(2).
    pos, vel, mass = kepler_binary(G=1.0, rng=None, e=0.0, a=1.0)
    s = Gravity().initialise(pos, vel, mass)
    assert Aarseth(value(0.02), Gravity(), LEAPFROG).dt(s).item() == pytest.approx(math.sqrt(0.02 / 2), rel=1e-12)


def test_aarseth_on_two_bodies_falling_from_rest():
    # Unit masses at rest 1 apart: the separation obeys r'' = -2 / r^2, so at rest r''' = 0,
    # r'''' = 4 r^-3 r'' = -8 and r''''' = 0. Each body carries half: |a| = 1, jerk 0, |snap| = 4,
    # crackle 0, and the criterion reduces to sqrt(eta |a| / |a2|) = sqrt(eta / 4).
    s = state([[0.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0])
    acc, jerk, snap, crackle = derivatives(s.pos, s.vel, s.mass, Gravity())
    assert acc.norm(dim=-1).flatten().tolist() == pytest.approx([1.0, 1.0])
    assert snap.norm(dim=-1).flatten().tolist() == pytest.approx([4.0, 4.0])
    assert not jerk.any() and not crackle.any()
    assert Aarseth(value(0.01), Gravity(), LEAPFROG).dt(s).item() == pytest.approx(math.sqrt(0.01 / 4))


def trajectory_derivatives(gravity: Gravity, h: float = 1e-3, substeps: int = 200):
    """Analytic derivatives at t = 0 and at t = +-h along an accurately integrated trajectory of a
    three-body system (the figure-eight, perturbed so that no symmetry hides an error)."""
    pos, vel, mass = figure_eight(G=1.0, rng=None)
    mass = mass * torch.tensor([[1.0, 1.3, 0.8]], dtype=torch.float64)
    s0 = gravity.initialise(pos, vel, mass)

    def advance(s, dt):
        for _ in range(substeps):
            s = LEAPFROG.step(s, torch.full((1,), dt / substeps, dtype=torch.float64), gravity)
        return s

    at = lambda s: derivatives(s.pos, s.vel, s.mass, gravity)  # noqa: E731
    return at(s0), at(advance(s0, h)), at(advance(s0, -h)), h


@pytest.mark.parametrize("softening", [0.0, 0.3])
def test_analytic_jerk_snap_crackle_match_finite_differences_along_a_trajectory(softening):
    gravity = Gravity(1.0, softening)
    now, plus, minus, h = trajectory_derivatives(gravity)
    for k, name in enumerate(["jerk", "snap", "crackle"]):
        fd = (plus[k] - minus[k]) / (2 * h)  # central difference of the previous derivative
        scale = now[k + 1].abs().max()
        assert (fd - now[k + 1]).abs().max() < 1e-5 * scale, name


def test_analytic_acceleration_is_the_gravity_acceleration():
    gravity = Gravity(1.0, 0.1)
    pos, vel, mass = figure_eight(G=1.0, rng=None)
    acc = derivatives(pos, vel, mass, gravity)[0]
    assert torch.allclose(acc, gravity.accelerations(pos, mass), rtol=1e-13, atol=1e-15)


def untrained_policy(adapter: str, history_len: int = 0) -> Policy:
    cls = registry.get_registry().get("features", adapter)
    torch.manual_seed(0)
    return Policy(cls(Gravity(), history_len=history_len), ModelConfig()).double().eval()


def test_learned_is_the_network_dt_times_the_scale():
    model = untrained_policy("analytic")
    pos, vel, mass = kepler_binary(G=1.0, rng=None, e=0.7, count=2)
    s = Gravity().initialise(pos, vel, mass)
    scale = torch.tensor([1.0, 0.25], dtype=torch.float64)
    policy = Learned(scale, Gravity(), LEAPFROG, model=model)
    policy.reset(s)
    expected, _ = model(s, model.adapter.empty_history(s))
    assert torch.allclose(policy.dt(s), expected * scale)
    # An untrained network predicts init_dt_fraction of the free-fall time (DtNet's initialisation).
    assert torch.allclose(expected, 0.02 * Gravity().freefall_time(s.pos, s.mass), rtol=0.05)


def test_learned_keeps_a_zero_padded_history_of_its_own_predictions():
    model = untrained_policy("history", history_len=3)
    pos, vel, mass = kepler_binary(G=1.0, rng=None, e=0.5)
    s = Gravity().initialise(pos, vel, mass)
    policy = Learned(value(0.5), Gravity(), LEAPFROG, model=model)
    policy.reset(s)
    assert policy.history.shape == (1, 3, model.adapter.memory_dim) and not policy.history.any()
    dt = policy.dt(s)
    new = policy.step(s, dt)
    assert torch.equal(new.pos, LEAPFROG.step(s, dt, Gravity()).pos)
    assert not policy.history[:, :2].any()
    assert torch.allclose(policy.history[:, 2], model.adapter.memory(s, dt / 0.5))  # the unscaled prediction


def test_learned_without_a_checkpoint_is_a_user_error():
    with pytest.raises(UserError, match="needs a checkpoint"):
        Learned(value(1.0), Gravity(), LEAPFROG)


def test_learned_with_a_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Learned(value(1.0), Gravity(), LEAPFROG, checkpoint=tmp_path / "nope.pt")


def responsive_policy() -> Policy:
    """An untrained analytic policy whose dt depends strongly on its features (a steep output layer)."""
    model = untrained_policy("analytic")
    torch.manual_seed(1)
    out = model.net.body[-1]
    torch.nn.init.normal_(out.weight, std=0.5)
    return model


def run_learned(policy: Learned, s, steps: int):
    policy.reset(s)
    for _ in range(steps):
        s = policy.step(s, policy.dt(s))
    return s


def reversed_velocities(s):
    return type(s)(s.pos, -s.vel, s.mass, s.acc, s.time)


@pytest.mark.parametrize(("system", "scale"), [("binary", 10.0), ("figure_eight", 5.0)])
@torch.no_grad()
def test_symmetric_learned_step_run_forward_then_backward_returns_to_the_start(system, scale):
    gravity = Gravity()
    ics = kepler_binary(G=1.0, rng=None, e=0.7) if system == "binary" else figure_eight(G=1.0, rng=None)
    start = gravity.initialise(*ics)
    distance = {}
    for symmetric in (True, False):
        policy = Learned(value(scale), gravity, LEAPFROG, model=responsive_policy(), symmetric=symmetric,
                         iterations=20)
        there = run_learned(policy, start, 60)
        back = reversed_velocities(run_learned(policy, reversed_velocities(there), 60))
        distance[symmetric] = float(torch.maximum((back.pos - start.pos).abs().max(), (back.vel - start.vel).abs().max()))
        assert float(there.time) > 3.0  # most of an orbit (binary period 4.4, figure-eight 6.3)
    assert distance[True] < 1e-10  # back to the start to rounding
    assert distance[False] > 1e-3  # the explicit learned step is not reversible


def test_symmetric_learned_step_averages_both_ends_and_counts_its_trial_steps():
    gravity = Gravity()
    s = gravity.initialise(*kepler_binary(G=1.0, rng=None, e=0.5))
    model = responsive_policy()
    policy = Learned(value(0.5), gravity, LEAPFROG, model=model, symmetric=True, iterations=3)
    dt = policy.dt(s)
    start, _ = model(s, model.adapter.empty_history(s))
    trial = torch.tensor([0.0], dtype=torch.float64)
    prediction = start
    for _ in range(3):
        end, _ = model(LEAPFROG.step(s, prediction * 0.5, gravity), model.adapter.empty_history(s))
        prediction = 0.5 * (start + end)
        trial = prediction
    torch.testing.assert_close(dt, trial * 0.5, rtol=0, atol=0)
    assert policy.force_evaluations_per_step == 4.0
    assert Learned(value(0.5), gravity, LEAPFROG, model=model).force_evaluations_per_step == 1.0


def test_symmetric_learned_step_refuses_a_policy_with_history():
    with pytest.raises(UserError, match="without history"):
        Learned(value(1.0), Gravity(), LEAPFROG, model=untrained_policy("history", history_len=2), symmetric=True)
