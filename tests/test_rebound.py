"""plugins/aits-rebound: REBOUND files as initial conditions (round trips both ways, archives) and
REBOUND IAS15 as a reference in ``aits simulate``, checked against Kepler's period."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aits import registry
from aits.cli import app
from aits.errors import UserError
from aits.physics import Gravity, kepler
from aits.physics.initial import cluster, figure_eight, kepler_binary

rebound = pytest.importorskip("rebound")
PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "aits-rebound" / "src"


@pytest.fixture
def plugin(monkeypatch):
    """The plugin's module from its source tree, registered as if installed (entry point or not)."""
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    module = importlib.import_module("aits_rebound")
    monkeypatch.setenv(registry.NO_ENTRY_POINTS_ENV, "1")
    pm, sources, broken = registry.build_plugin_manager()
    pm.register(module, name="aits-rebound")
    reg = registry.collect(pm, {**sources, "aits-rebound": "aits-rebound 0.1.0"}, broken)
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    return module


def test_aits_bodies_survive_a_rebound_file(plugin, tmp_path):
    pos, vel, mass = cluster(G=1.0, rng=torch.Generator().manual_seed(3), n=6)
    path = plugin.save(tmp_path / "cluster.bin", pos[0], vel[0], mass[0])
    got = plugin.rebound_file(G=1.0, rng=torch.Generator(), path=str(path))
    for a, b in zip(got, (pos, vel, mass)):
        assert torch.allclose(a, b, rtol=0, atol=1e-15)
    flat = figure_eight(G=1.0, rng=torch.Generator())  # a planar problem
    path = plugin.save(tmp_path / "eight.bin", flat[0][0], flat[1][0], flat[2][0])
    got = plugin.rebound_file(G=1.0, rng=torch.Generator(), path=str(path), dims=2, count=2)
    assert got[0].shape == (2, 3, 2) and torch.allclose(got[0][1], flat[0][0], atol=1e-15)


def test_a_rebound_archive_reads_each_snapshot_in_the_centre_of_mass_frame(plugin, tmp_path):
    sim = rebound.Simulation()
    sim.add(m=1.0)
    sim.add(m=1e-3, a=1.0, e=0.3)
    sim.add(m=2e-3, a=2.5, e=0.1, inc=0.2)
    path = tmp_path / "archive.bin"
    sim.save_to_file(str(path), interval=1.0, delete_file=True)
    sim.integrate(3.0)
    archive = rebound.Simulationarchive(str(path))
    assert len(archive) >= 3
    for index in (0, -1):
        snap = archive[index]
        pos, vel, mass = plugin.rebound_file(G=1.0, rng=torch.Generator(), path=str(path), snapshot=index)
        m = torch.tensor([p.m for p in snap.particles], dtype=torch.float64)
        xyz = torch.tensor([p.xyz for p in snap.particles], dtype=torch.float64)
        com = (m[:, None] * xyz).sum(0) / m.sum()
        assert torch.equal(mass[0], m) and torch.allclose(pos[0], xyz - com, rtol=0, atol=1e-14)
        assert torch.allclose((mass[0, :, None] * vel[0]).sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-15)
    first = plugin.rebound_file(G=1.0, rng=torch.Generator(), path=str(path), snapshot=0)[0]
    assert not torch.allclose(first, pos)  # the planets moved between the snapshots


@pytest.mark.parametrize("kwargs, message", [
    ({"G": 2.0}, "the simulation has G = 1, aits integrates with G = 2"),
    ({"snapshot": 5}, "snapshot 5 out of range (the archive holds 1)"),
    ({"dims": 2}, "dims=2 but the particles have z or vz != 0"),
])
def test_bad_requests_are_one_line(plugin, tmp_path, kwargs, message):
    pos, vel, mass = cluster(G=1.0, rng=torch.Generator().manual_seed(1), n=3)
    path = plugin.save(tmp_path / "c.bin", pos[0], vel[0], mass[0])
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plugin.rebound_file(**{"G": 1.0, "rng": torch.Generator(), "path": str(path), **kwargs})


def test_a_foreign_file_is_one_line(plugin, tmp_path):
    (tmp_path / "x.bin").write_bytes(b"not a simulation" * 8)
    with pytest.raises(UserError, match="x.bin: not a REBOUND simulation file or archive"):
        plugin.rebound_file(G=1.0, rng=torch.Generator(), path=str(tmp_path / "x.bin"))


def test_ias15_closes_a_kepler_orbit_after_one_period(plugin):
    pos, vel, mass = kepler_binary(G=1.3, rng=torch.Generator(), m1=0.6, m2=0.4, e=0.7)
    gravity = Gravity(1.3)
    s = gravity.initialise(pos, vel, mass)
    period = kepler.period(1.0, float(mass.sum()), 1.3)
    result = plugin.IAS15().run(s, period, gravity)
    assert result.max_error < 1e-13 and result.end_time == pytest.approx(period, rel=1e-14)
    assert 8 <= result.force_evaluations / result.steps <= 40  # 7 substages a pass, at least one pass
    sim = plugin.IAS15().simulation(s, gravity)
    sim.integrate(period, exact_finish_time=1)
    end = plugin.bodies_of(sim)
    assert torch.allclose(end[0], pos, atol=1e-10) and torch.allclose(end[1], vel, atol=1e-10)


def test_simulate_runs_ias15_beside_the_policies_on_a_rebound_file(plugin, tmp_path):
    pos, vel, mass = figure_eight(G=1.0, rng=torch.Generator())
    path = plugin.save(tmp_path / "eight.bin", pos[0], vel[0], mass[0])
    result = CliRunner().invoke(app, ["simulate", "-S", "rebound_file", "-p", f"path={path}", "--time", "6.3259",
                                      "--policy", "freefall", "--reference", "rebound_ias15", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["system"]["bodies"] == 3 and report["policies"][0]["policy"] == "freefall"
    (ias15,) = report["references"]
    assert ias15["label"] == "rebound_ias15" and ias15["steps"] > 10
    assert ias15["max_rel_energy_error"] < 1e-12 and ias15["end_time"] == pytest.approx(6.3259)
    result = CliRunner().invoke(app, ["simulate", "--reference", "rebound_ias16"])
    assert result.exit_code == 2 and "unknown reference 'rebound_ias16'; did you mean 'rebound_ias15'?" in result.output
