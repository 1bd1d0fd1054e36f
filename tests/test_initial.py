"""Initial-condition generators: requested orbits, ranges and phases, centre-of-mass frame, virial
ratio, file input and its error messages."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from aits.builtin.initial_conditions import from_file
from aits.errors import UserError
from aits.physics import Gravity, Systems, initial, kepler
from aits.physics.gravity import kinetic_energy
from aits.systems import make_systems

F64 = torch.float64


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def orbit(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, G: float = 1.0):
    """Relative position, velocity, semi-major axis and eccentricity of each binary."""
    r, v = pos[:, 1] - pos[:, 0], vel[:, 1] - vel[:, 0]
    a, e = kepler.elements(r, v, mass.sum(1), G)
    return r, v, a, e


def ks_uniform(samples: torch.Tensor) -> float:
    """Kolmogorov-Smirnov distance between ``samples`` in [0, 1) and the uniform distribution."""
    x, n = samples.sort().values, samples.numel()
    i = torch.arange(1, n + 1, dtype=F64)
    return torch.maximum(i / n - x, x - (i - 1) / n).max().item()


def anomalies(r: torch.Tensor, v: torch.Tensor, a: torch.Tensor, e: torch.Tensor, m_total: torch.Tensor):
    """True and mean anomaly of each orbit (pericentre on +x, motion counter-clockwise), in [0, 2 pi)."""
    true = torch.atan2(r[:, 1], r[:, 0]) % (2 * math.pi)
    cos_ecc = (1 - r.norm(dim=-1) / a) / e
    sin_ecc = (r * v).sum(-1) / (e * torch.sqrt(m_total * a))
    ecc = torch.atan2(sin_ecc, cos_ecc)
    return true, (ecc - e * torch.sin(ecc)) % (2 * math.pi)


# ---------------------------------------------------------------- binaries


@pytest.mark.parametrize(
    ("G", "m1", "m2", "a", "e", "dims"),
    [(1.0, 1.0, 1.0, 1.0, 0.5, 3), (1.0, 0.3, 2.0, 4.0, 0.95, 2), (2.0, 5.0, 1.0, 0.2, 0.0, 3)],
)
def test_kepler_binary_has_requested_elements(G: float, m1: float, m2: float, a: float, e: float, dims: int) -> None:
    pos, vel, mass = initial.kepler_binary(G=G, rng=rng(), m1=m1, m2=m2, a=a, e=e, dims=dims, count=2)
    assert pos.shape == vel.shape == (2, 2, dims) and mass.shape == (2, 2)
    assert pos.dtype == vel.dtype == mass.dtype == F64
    torch.testing.assert_close(mass, torch.tensor([[m1, m2]] * 2, dtype=F64))
    _, _, a_got, e_got = orbit(pos, vel, mass, G)
    torch.testing.assert_close(a_got, torch.full((2,), a, dtype=F64), rtol=1e-12, atol=0)
    torch.testing.assert_close(e_got, torch.full((2,), e, dtype=F64), rtol=0, atol=1e-12)


def test_binary_batch_draws_within_the_ranges() -> None:
    params = dict(e_min=0.2, e_max=0.8, a_min=0.5, a_max=8.0, q_min=0.25, q_max=1.0, m_total=3.0)
    pos, vel, mass = initial.binary_batch(G=1.0, rng=rng(), count=1000, **params)
    _, _, a, e = orbit(pos, vel, mass)
    q = mass[:, 1] / mass[:, 0]
    torch.testing.assert_close(mass.sum(1), torch.full((1000,), 3.0, dtype=F64))
    for values, lo, hi in ((e, 0.2, 0.8), (a, 0.5, 8.0), (q, 0.25, 1.0)):
        assert values.min() >= lo * (1 - 1e-9) and values.max() <= hi * (1 + 1e-9)
        assert values.min() < lo + 0.02 * (hi - lo) and values.max() > hi - 0.02 * (hi - lo)  # spans it
    assert a.log().median().item() == pytest.approx(math.log(2.0), abs=0.15)  # log-uniform: median sqrt(0.5 * 8)


def test_binary_batch_is_reproducible_from_the_seed() -> None:
    first, again, other = (initial.binary_batch(G=1.0, rng=rng(seed), count=8) for seed in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize(("phase", "sign"), [("pericentre", -1.0), ("apocentre", 1.0)])
def test_binary_batch_turning_points(phase: str, sign: float) -> None:
    pos, vel, mass = initial.binary_batch(G=1.0, rng=rng(), count=50, e_min=0.1, e_max=0.9, a_max=3.0, phase=phase)
    r, v, a, e = orbit(pos, vel, mass)
    torch.testing.assert_close(r.norm(dim=-1), a * (1 + sign * e), rtol=1e-12, atol=0)
    assert ((r * v).sum(-1).abs() < 1e-12).all()  # radial velocity zero


@pytest.mark.parametrize("phase", ["uniform_time", "uniform_angle"])
def test_binary_batch_phase_is_uniform_in_its_anomaly(phase: str) -> None:
    # The requested anomaly is uniform (KS distance below the 1% critical value 1.63/sqrt(n)); at
    # e = 0.7 the other anomaly is far from uniform, so the two phases are really different.
    n = 2000
    pos, vel, mass = initial.binary_batch(G=1.0, rng=rng(), count=n, e_min=0.7, e_max=0.7, a_max=2.0, phase=phase)
    r, v, a, e = orbit(pos, vel, mass)
    true, mean = anomalies(r, v, a, e, mass.sum(1))
    wanted, other = (mean, true) if phase == "uniform_time" else (true, mean)
    assert ks_uniform(wanted / (2 * math.pi)) < 1.63 / math.sqrt(n)
    assert ks_uniform(other / (2 * math.pi)) > 0.15


@pytest.mark.parametrize(
    ("generator", "params", "match"),
    [
        (initial.kepler_binary, {"e": 1.0}, "eccentricity"),
        (initial.kepler_binary, {"a": -1.0}, "semi-major axis"),
        (initial.kepler_binary, {"m2": 0.0}, "masses must be > 0"),
        (initial.kepler_binary, {"dims": 4}, "dims must be 2 or 3"),
        (initial.binary_batch, {"e_max": 1.2}, "e_max"),
        (initial.binary_batch, {"phase": "periapsis"}, "phase must be one of"),
        (initial.binary_batch, {"count": 0}, "count"),
        (initial.cluster, {"virial": 1.5}, "virial"),
        (initial.cluster, {"n": 1}, "n >= 2"),
        (initial.figure_eight, {}, "G = 1"),
    ],
)
def test_generators_reject_bad_parameters(generator: Callable, params: dict, match: str) -> None:
    G = 2.0 if generator is initial.figure_eight else 1.0
    with pytest.raises(UserError, match=match):
        generator(G=G, rng=rng(), **params)


# ---------------------------------------------------------------- frames and clusters


def write_table(path: Path, table: np.ndarray) -> str:
    np.save(path, table)
    return str(path)


GENERATORS: dict[str, Callable[[Path], tuple]] = {
    "kepler_binary": lambda _: initial.kepler_binary(G=1.0, rng=rng(), m1=0.5, m2=3.0, e=0.7, count=2),
    "binary_batch": lambda _: initial.binary_batch(G=1.0, rng=rng(), count=16, q_min=0.1, a_max=5.0),
    "figure_eight": lambda _: initial.figure_eight(G=1.0, rng=rng()),
    "pythagorean": lambda _: initial.pythagorean(G=1.0, rng=rng()),
    "cluster": lambda _: initial.cluster(G=1.0, rng=rng(), count=4, n=6, dims=2),
    "from_file": lambda tmp: from_file(
        G=1.0, rng=rng(), path=write_table(tmp / "ic.npy", np.random.default_rng(0).uniform(0.5, 2.0, (5, 7)))
    ),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_generators_start_in_the_centre_of_mass_frame(name: str, tmp_path: Path) -> None:
    pos, vel, mass = GENERATORS[name](tmp_path)
    assert pos.dtype == vel.dtype == mass.dtype == F64 and pos.shape == vel.shape and mass.shape == pos.shape[:2]
    for x in (pos, vel):
        weighted = (mass[..., None] * x).sum(1)
        assert (weighted.abs() <= 1e-14 * (mass[..., None] * x.abs()).sum(1).clamp_min(1.0)).all()


@pytest.mark.parametrize(("G", "virial", "dims", "n"), [(1.0, 0.5, 3, 8), (2.0, 0.3, 2, 5), (0.5, 0.9, 3, 3)])
def test_cluster_is_bound_with_the_requested_virial_ratio(G: float, virial: float, dims: int, n: int) -> None:
    gravity = Gravity(G=G)
    s = gravity.initialise(*initial.cluster(G=G, rng=rng(), count=4, n=n, dims=dims, virial=virial))
    assert s.pos.shape == (4, n, dims)
    torch.testing.assert_close(s.mass.sum(1), torch.ones(4, dtype=F64))
    k, w = kinetic_energy(s.vel, s.mass), gravity.potential_energy(s.pos, s.mass)
    torch.testing.assert_close(k / w.abs(), torch.full((4,), virial, dtype=F64), rtol=1e-12, atol=0)
    assert (gravity.energy(s) < 0).all()
    assert not torch.equal(s.pos[0], s.pos[1])  # the systems of a batch differ


# ---------------------------------------------------------------- from_file


def table(batch: int | None = None, n: int = 3, dims: int = 2, seed: int = 0) -> np.ndarray:
    """Rows ``m, x..., v...`` with positive masses, shape (n, 1+2D) or (batch, n, 1+2D)."""
    shape = (n, 1 + 2 * dims) if batch is None else (batch, n, 1 + 2 * dims)
    data = np.random.default_rng(seed).normal(size=shape)
    data[..., 0] = np.abs(data[..., 0]) + 0.5
    return data


def expected(data: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What from_file should return for ``data``: batched, shifted to the centre-of-mass frame."""
    t = torch.as_tensor(data, dtype=F64).reshape(-1, *data.shape[-2:])
    dims = (t.shape[-1] - 1) // 2
    mass = t[..., 0]
    return (
        initial.to_centre_of_mass(t[..., 1 : 1 + dims], mass),
        initial.to_centre_of_mass(t[..., 1 + dims :], mass),
        mass,
    )


def assert_bodies_equal(got: tuple, want: tuple) -> None:
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("batch", "dims"), [(None, 2), (None, 3), (4, 3), (2, 2)])
def test_from_file_reads_npy(tmp_path: Path, batch: int | None, dims: int) -> None:
    data = table(batch, n=4, dims=dims)
    path = write_table(tmp_path / "bodies.npy", data)
    assert_bodies_equal(from_file(G=1.0, rng=rng(), path=path), expected(data))


def test_from_file_repeats_count_times(tmp_path: Path) -> None:
    data = table(2)
    pos, vel, mass = from_file(G=1.0, rng=rng(), path=write_table(tmp_path / "b.npy", data), count=3)
    assert pos.shape == (6, 3, 2)
    torch.testing.assert_close(pos[4:], expected(data)[0])


@pytest.mark.parametrize("header", ["m,x,y,vx,vy\n", "# mass, position, velocity\n", ""])
def test_from_file_reads_csv(tmp_path: Path, header: str) -> None:
    data = table(n=3, dims=2)
    path = tmp_path / "bodies.csv"
    path.write_text(header + "\n".join(",".join(repr(float(x)) for x in row) for row in data) + "\n")
    assert_bodies_equal(from_file(G=1.0, rng=rng(), path=str(path)), expected(data))


def bad_files() -> dict[str, tuple[str, str | np.ndarray, str]]:
    """name -> (file name, .npy array or .csv text, expected message)."""
    nan, inf, zero_mass, negative_mass = table(), table(), table(), table()
    nan[1, 2] = np.nan
    inf[0, 4] = np.inf
    zero_mass[2, 0] = 0.0
    negative_mass[0, 0] = -1.0
    return {
        "odd_columns": ("a.npy", np.ones((3, 4)), r"expected shape \(N, 1\+2D\) or \(B, N, 1\+2D\).*got \(1, 3, 4\)"),
        "one_body": ("a.npy", np.ones((1, 5)), "N >= 2"),
        "four_axes": ("a.npy", np.ones((2, 2, 3, 5)), "expected shape"),
        "one_axis": ("a.npy", np.ones(5), "expected shape"),
        "nan": ("a.npy", nan, "NaN or infinite"),
        "inf": ("a.npy", inf, "NaN or infinite"),
        "zero_mass": ("a.npy", zero_mass, "every mass must be > 0"),
        "negative_mass": ("a.npy", negative_mass, "every mass must be > 0"),
        "nan_csv": ("a.csv", "1,0,0,0,0\n1,nan,0,0,0\n", "NaN or infinite"),
        "ragged_csv": ("a.csv", "1,0,0,0,0\n1,1,0,0\n", "same number of numeric columns"),
        "text_csv": ("a.csv", "m,x,y,vx,vy\n1,0,0,0,0\n1,one,0,0,0\n", "same number of numeric columns"),
        "empty_csv": ("a.csv", "", "expected shape"),
        "not_npy": ("a.npy", "this is not an array", "not a readable numeric .npy array"),
    }


@pytest.mark.parametrize("name", bad_files())
def test_from_file_rejects_bad_content(tmp_path: Path, name: str) -> None:
    file_name, content, match = bad_files()[name]
    path = tmp_path / file_name
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    with pytest.raises(UserError, match=match) as info:
        from_file(G=1.0, rng=rng(), path=str(path))
    assert str(path) in str(info.value)  # the message names the file


@pytest.mark.parametrize(
    ("path", "match"), [("", "needs a path"), ("no/such/file.npy", "file not found: no/such/file.npy")]
)
def test_from_file_missing_path(path: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        from_file(G=1.0, rng=rng(), path=path)


# ---------------------------------------------------------------- make_systems


def make(generator: Callable, params: dict, dtype: torch.dtype = F64) -> Systems:
    return make_systems(generator, params, Gravity(), rng(), dtype, torch.device("cpu"))


def test_make_systems_initialises_in_the_requested_dtype() -> None:
    s = make(initial.kepler_binary, {"e": 0.3, "count": 3}, torch.float32)
    assert s.pos.dtype == s.acc.dtype == s.mass.dtype == torch.float32 and s.batch == 3
    torch.testing.assert_close(s.acc, Gravity().accelerations(s.pos, s.mass))
    assert (s.time == 0).all()


@pytest.mark.parametrize(
    ("generator", "key", "match"),
    [
        (initial.kepler_binary, "dim", r"unknown parameter system\.params\.dim for kepler_binary; did you mean dims\?"),
        (initial.binary_batch, "emax", r"system\.params\.emax for binary_batch; did you mean e_max\?"),
        (initial.binary_batch, "zzz", r"system\.params\.zzz for binary_batch \(known: count, e_min, e_max, a_min"),
    ],
)
def test_make_systems_rejects_unknown_params_with_a_suggestion(generator: Callable, key: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        make(generator, {key: 1})


def test_make_systems_turns_bad_values_into_user_errors() -> None:
    with pytest.raises(UserError, match=r"system\.params.*kepler_binary"):
        make(initial.kepler_binary, {"e": "high"})
