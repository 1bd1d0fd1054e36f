"""Feature adapters: dimensionless and invariant under the symmetries of gravity; history windows."""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

from aits.builtin.features import Analytic, AarsethScaled, History, _closest_pair, closest_pair_features
from aits.interfaces import push_history
from aits.physics import Gravity, Systems, blocks, initial, kepler
from aits.physics.gravity import pair_freefall_time

F64 = torch.float64
GRAVITY = Gravity()
Bodies = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cluster(dims: int) -> Bodies:
    return initial.cluster(G=1.0, rng=rng(dims), count=4, n=5, dims=dims)


def rotation(dims: int) -> torch.Tensor:
    """A random proper rotation matrix (D, D)."""
    q, _ = torch.linalg.qr(torch.randn(dims, dims, generator=rng(1), dtype=F64))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotate(bodies: Bodies) -> Bodies:
    pos, vel, mass = bodies
    r = rotation(pos.shape[-1])
    return pos @ r.T, vel @ r.T, mass


L, M = 7.3, 0.04  # new length and mass units; with G = 1 the time unit is sqrt(L^3 / M)
TRANSFORMS: dict[str, Callable[[Bodies], Bodies]] = {
    "rotation": rotate,
    "translation_and_boost": lambda b: (b[0] + torch.linspace(-3, 5, b[0].shape[-1], dtype=F64), b[1] + 0.7, b[2]),
    "permutation": lambda b: tuple(x[:, [3, 0, 4, 2, 1]] for x in b),
    "units": lambda b: (b[0] * L, b[1] * math.sqrt(M / L), b[2] * M),
}


def history_features(s: Systems, dt: torch.Tensor) -> torch.Tensor:
    """History-adapter features after one remembered step of size ``dt``."""
    adapter = History(GRAVITY, history_len=2)
    return adapter.features(s, push_history(adapter.empty_history(s), adapter.memory(s, dt)))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", TRANSFORMS)
def test_features_are_invariant(name: str, dims: int) -> None:
    bodies = cluster(dims)
    before, after = GRAVITY.initialise(*bodies), GRAVITY.initialise(*TRANSFORMS[name](bodies))
    analytic = Analytic(GRAVITY)
    reference = analytic.features(before, analytic.empty_history(before))
    assert reference.shape == (4, analytic.dim) and torch.isfinite(reference).all()
    assert reference.std(0).min() > 0  # the features do vary between systems
    transformed = analytic.features(after, analytic.empty_history(after))
    torch.testing.assert_close(transformed, reference, rtol=1e-10, atol=1e-12)
    dt = 1e-3 * torch.arange(1, 5, dtype=F64)  # a step is a time: it changes with the time unit
    dt_after = dt * math.sqrt(L**3 / M) if name == "units" else dt
    torch.testing.assert_close(history_features(after, dt_after), history_features(before, dt), rtol=1e-10, atol=1e-12)


def test_analytic_features_of_a_kepler_binary() -> None:
    # At a turning point v^2 r / GM = h^2 / (GM r) = 1 +- e, r.v = 0; two bodies have no tidal field
    # and no second pair.
    for phase, sign in (("pericentre", 1.0), ("apocentre", -1.0)):
        s = GRAVITY.initialise(*initial.binary_batch(G=1.0, rng=rng(), count=6, e_max=0.9, a_max=5.0, phase=phase))
        _, e = kepler.elements(s.pos[:, 1] - s.pos[:, 0], s.vel[:, 1] - s.vel[:, 0], s.mass.sum(1))
        f = Analytic(GRAVITY).features(s, Analytic(GRAVITY).empty_history(s))
        torch.testing.assert_close(f[:, 0], torch.log1p(1 + sign * e))
        torch.testing.assert_close(f[:, 2], torch.log1p(1 + sign * e))
        torch.testing.assert_close(f[:, [1, 3, 4]], torch.zeros(6, 3, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("softening", [0.0, 0.05])
def test_two_body_shortcut_equals_the_closest_pair_search(softening: float) -> None:
    # The closest pair of each cluster, cut out as a two-body system that keeps the accelerations
    # (so the tidal field) of the whole cluster: only the ratio to the next pair time can differ.
    gravity = Gravity(softening=softening)
    whole = gravity.initialise(*cluster(3))
    tau = gravity.pair_timescales(whole.pos, whole.mass).flatten(1).argmin(1)
    rows = torch.arange(whole.batch)[:, None]
    pair = torch.stack([tau // 5, tau % 5], 1)
    cut = Systems(whole.pos[rows, pair], whole.vel[rows, pair], whole.mass[rows, pair], whole.acc[rows, pair], whole.time)
    f_whole, tau_whole = closest_pair_features(whole, gravity)
    f_pair, tau_pair = closest_pair_features(cut, gravity)
    torch.testing.assert_close(tau_pair, tau_whole, rtol=1e-15, atol=0)
    torch.testing.assert_close(f_pair[:, :4], f_whole[:, :4], rtol=1e-13, atol=1e-15)
    assert (f_whole[:, 3] > 1e-3).all() and (f_whole[:, 4] > 0).all() and (f_pair[:, 4] == 0).all()


def test_empty_history_is_zero_padded() -> None:
    s = GRAVITY.initialise(*cluster(3))
    adapter = History(GRAVITY, history_len=3)
    history = adapter.empty_history(s)
    assert history.shape == (4, 3, adapter.memory_dim) and history.dtype == F64
    assert (history == 0).all()
    features = adapter.features(s, history)
    assert features.shape == (4, adapter.dim) and adapter.dim == Analytic.dim + 3 * adapter.memory_dim
    torch.testing.assert_close(features[:, : Analytic.dim], Analytic(GRAVITY).features(s, history))
    assert (features[:, Analytic.dim :] == 0).all()


def test_memory_is_appended_newest_last() -> None:
    s = GRAVITY.initialise(*cluster(3))
    adapter = History(GRAVITY, history_len=3)
    dt = torch.full((4,), 1e-3, dtype=F64)
    memory = adapter.memory(s, dt)
    assert memory.shape == (4, adapter.memory_dim)
    torch.testing.assert_close(memory[:, -1], torch.log(dt / GRAVITY.freefall_time(s.pos, s.mass)))
    features = adapter.features(s, push_history(adapter.empty_history(s), memory))
    assert (features[:, Analytic.dim : -adapter.memory_dim] == 0).all()
    torch.testing.assert_close(features[:, -adapter.memory_dim :], memory)


def test_push_history_drops_the_oldest_entry() -> None:
    history = torch.arange(2 * 3 * 2, dtype=F64).view(2, 3, 2)  # (B, H, M)
    new = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]], dtype=F64)
    pushed = push_history(history, new)
    assert pushed.shape == history.shape
    torch.testing.assert_close(pushed[:, :2], history[:, 1:])
    torch.testing.assert_close(pushed[:, 2], new)
    assert torch.equal(history, torch.arange(12, dtype=F64).view(2, 3, 2))  # the input is not modified


def test_push_history_without_a_window_keeps_nothing() -> None:
    empty = torch.zeros(2, 0, 0, dtype=F64)
    assert push_history(empty, torch.zeros(2, 0, dtype=F64)).shape == (2, 0, 0)


def test_history_needs_a_window() -> None:
    with pytest.raises(ValueError, match="history_len >= 1"):
        History(GRAVITY, history_len=0)


def test_closest_pair_search_in_blocks_of_systems_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    s = GRAVITY.initialise(*initial.cluster(G=1.0, rng=rng(), count=30, n=5))
    whole = closest_pair_features(s, GRAVITY)
    monkeypatch.setattr(blocks, "BLOCK_PAIRS", 4 * 25)  # blocks of 4 systems, the last one of 2
    assert all(torch.equal(a, b) for a, b in zip(whole, closest_pair_features(s, GRAVITY)))


def test_aarseth_scaled_features_are_relative_to_aarseths_time_scale() -> None:
    """Its time scale is the Aarseth policy's dt at eta = 1; on a circular binary both equal
    1 / omega (the orbit's angular frequency), and the extra feature is log(T_A / tau) there."""
    gravity = Gravity()
    s = gravity.initialise(*initial.kepler_binary(G=1.0, rng=rng(), e=0.0, a=2.0))
    features, scale = AarsethScaled(gravity).features_and_timescale(s, torch.empty(1, 0, 0))
    omega = math.sqrt(2.0 / 2.0**3)  # sqrt(G M / a^3)
    torch.testing.assert_close(scale, torch.full((1,), 1 / omega, dtype=torch.float64))
    analytic, tau = closest_pair_features(s, gravity)
    torch.testing.assert_close(features[:, :-1], analytic)
    torch.testing.assert_close(features[:, -1], torch.log(scale / tau))
    torch.testing.assert_close(tau, torch.full((1,), math.sqrt(2.0**3 / 2.0), dtype=torch.float64))


def test_closest_pair_search_finds_the_two_shortest_free_fall_times_of_a_sort() -> None:
    s = GRAVITY.initialise(*initial.cluster(G=1.0, rng=rng(), count=30, n=6))
    second, i, j = _closest_pair(s, GRAVITY)
    for b in range(s.batch):
        times = sorted((float(pair_freefall_time(((s.pos[b, q] - s.pos[b, p]) ** 2).sum(),
                                                 s.mass[b, p] + s.mass[b, q])), p, q)
                       for p in range(6) for q in range(p + 1, 6))
        assert (int(i[b]), int(j[b])) == times[0][1:]
        assert float(second[b]) == pytest.approx(times[1][0], rel=1e-14)
