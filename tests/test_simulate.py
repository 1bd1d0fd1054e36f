"""``aits simulate``: the batched engine (eager and compiled), second-order energy scaling, the
--target-error search, the learned policy from a checkpoint trained here, the JSON report and the plot."""

from __future__ import annotations

import functools
import json
import math
import os

import pytest
import torch
from typer.testing import CliRunner

from aits import registry
from aits.cli import app
from aits.config import ModelConfig
from aits.interfaces import DtPolicy
from aits.model import Policy
from aits.physics import Gravity, kepler
from aits.physics.initial import cluster
from aits.physics.pairs import EnergyMeter
from aits.simulation import chunks
from aits.simulation.engine import integrate
from aits.simulation.problem import PolicySpec, Setup
from aits.simulation.search import search
from aits.simulation.setup import make_setup, period_of

PERIOD = kepler.period(1.0, 2.0)  # unit masses, a = 1


def spec(name: str, **options) -> PolicySpec:
    return PolicySpec(name, registry.get_registry().get("policy", name), options)


def binary(e: float, periods: float = 1.0) -> Setup:
    return make_setup("kepler_binary", {"e": e}, periods=periods)[0]


def run(setup: Setup, name: str, *values: float, **kwargs):
    return integrate(setup.repeat(len(values)), spec(name), torch.tensor(values, dtype=torch.float64), **kwargs)


def test_energy_meter_matches_gravity_energy():
    gravity = Gravity(1.0, 0.05)
    pos, vel, mass = cluster(G=1.0, rng=torch.Generator().manual_seed(1), count=3, n=5)
    s = gravity.initialise(pos, vel, mass)
    assert torch.allclose(EnergyMeter(gravity, s.mass, s.dims)(s), gravity.energy(s), rtol=1e-13, atol=0)


def test_duration_in_periods_uses_the_kepler_period():
    setup, info = make_setup("kepler_binary", {"e": 0.9, "a": 2.0}, periods=3)
    assert info.period == pytest.approx(kepler.period(2.0, 2.0))
    assert setup.t_end.item() == pytest.approx(3 * kepler.period(2.0, 2.0))
    eight = make_setup("figure_eight", periods=1)[0]
    assert period_of("figure_eight", eight.systems, eight.gravity) == pytest.approx(6.32591398)


def test_each_system_lands_exactly_on_its_own_end_time_and_then_stops_counting():
    setup = binary(0.5)
    batch = setup.repeat(2)
    batch = Setup(batch.systems, torch.tensor([1.0, 2.05], dtype=torch.float64), batch.gravity, batch.integrator)
    out = integrate(batch, spec("fixed"), torch.tensor([0.3, 0.3], dtype=torch.float64))
    assert [r.steps for r in out.rows] == [4, 7]  # ceil(t_end / dt): the last step is shortened
    assert [r.end_time for r in out.rows] == [1.0, 2.05]
    assert all(r.status == "finished" for r in out.rows)


def test_fixed_dt_energy_error_of_a_binary_is_second_order_and_bounded():
    # Halving dt cuts the max energy error about fourfold; over ten orbits it does not grow.
    one = run(binary(0.5, periods=1), "fixed", 0.02, 0.01, 0.005).rows
    ratios = [one[0].max_error / one[1].max_error, one[1].max_error / one[2].max_error]
    assert ratios == pytest.approx([4.0, 4.0], rel=0.1)
    ten = run(binary(0.5, periods=10), "fixed", 0.01).rows[0]
    assert ten.max_error == pytest.approx(one[1].max_error, rel=0.05)
    assert ten.momentum_drift < 1e-13 and ten.angular_momentum_drift < 1e-12


class NaNAbove(DtPolicy):
    """dt = value, except NaN where value > 1 (a policy that breaks down)."""

    name = "nan_above"
    parameter = "dt"
    default = 0.1

    def dt(self, s):
        return torch.where(self.value > 1, math.nan, self.value)


def test_a_system_that_breaks_down_is_reported_nonfinite_and_the_rest_go_on():
    out = integrate(binary(0.5).repeat(2), PolicySpec("nan_above", NaNAbove), torch.tensor([0.1, 2.0]))
    ok, broken = out.rows
    assert ok.status == "finished" and ok.steps == math.ceil(PERIOD / 0.1)
    assert broken.status == "nonfinite" and broken.steps == 1


def test_known_failures_leave_the_batch_without_changing_the_answer():
    setup, target = binary(0.5), 1e-4
    values = torch.tensor([0.0035, 0.004, 0.0042, 0.0045, 0.005, 0.006], dtype=torch.float64)
    full = integrate(setup.repeat(6), spec("fixed"), values, stop_below=target)
    lean = integrate(setup.repeat(6), spec("fixed"), values, stop_below=target, drop_above=target, check_every=16)
    best = lambda rows: min((r for r in rows if r.passes(target)), key=lambda r: r.steps)  # noqa: E731
    assert best(lean.rows) == best(full.rows)
    assert [r.status for r in lean.rows[3:]] == ["finished", "stopped", "stopped"]  # 0.0045 fails but is counted
    assert lean.rows[3] == full.rows[3]


def test_target_error_search_finds_a_passing_setting_and_a_cheaper_failing_one():
    setup, target = binary(0.5), 1e-4
    for name in ("fixed", "freefall"):
        found = search(setup, spec(name), target)
        assert found.failing is not None
        best, failing = (run(setup, name, r.value).rows[0] for r in (found.best, found.failing))
        assert best.status == "finished" and best.max_error <= target
        assert failing.max_error > target and failing.steps < best.steps
        assert best.steps == found.best.steps
        assert best.steps < 1.04 * failing.steps  # neighbours on a fine grid


def test_baselines_at_equal_accuracy_match_the_reference_figures():
    # DESIGN §7 (10 orbits): e = 0.5, fixed dt ~10,400 steps, free-fall rule ~4,750; one orbit here.
    setup = binary(0.5)
    steps = {name: search(setup, spec(name), 1e-4).best.steps for name in ("fixed", "freefall")}
    assert steps["fixed"] == pytest.approx(10_400 / 10, rel=0.05)
    assert steps["freefall"] == pytest.approx(4_750 / 10, rel=0.06)


@pytest.fixture(scope="module")
def remembering() -> PolicySpec:
    """The learned policy around an untrained network with a history window: state kept per run."""
    torch.manual_seed(0)
    adapter = registry.get_registry().get("features", "history")(Gravity(), history_len=3)
    return spec("learned", model=Policy(adapter, ModelConfig()).double().eval())


SCALES = torch.linspace(0.5, 2.0, 37, dtype=torch.float64)  # 37: as many as a fine search round, one compiled graph


@pytest.fixture(scope="module", params=["aot_eager", pytest.param("inductor", marks=pytest.mark.skipif(
    os.environ.get("AITS_TEST_COMPILE") != "1", reason="set AITS_TEST_COMPILE=1 to compile with inductor"))])
def backend(request):
    """The compiled loop with the ``aot_eager`` backend (seconds), or inductor (a C++ compile, ~30 s);
    3 steps per call (a smaller graph, and checks every 128 steps fall inside a chunk)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "compile", functools.partial(torch.compile, backend=request.param))
        patch.setattr(chunks, "CHUNK", 3)
        chunks.compiled_chunk.cache_clear()
        yield request.param
    chunks.compiled_chunk.cache_clear()


def test_the_compiled_loop_matches_the_eager_one_to_rounding(backend, remembering, monkeypatch):
    setup = binary(0.7, periods=0.5).repeat(len(SCALES))
    eager = integrate(setup, remembering, SCALES, record=True, compiled=False)
    fast = integrate(setup, remembering, SCALES, record=True, compiled=True)
    monkeypatch.setattr(chunks, "COMPILE_PAYS_S", 0.0)  # auto: compiles at the first check
    auto = integrate(setup, remembering, SCALES, record=True)
    assert eager.compile_time_s == 0 and fast.compile_time_s > 0 and auto.compile_time_s > 0
    for out in (fast, auto):
        for a, b in zip(eager.rows, out.rows):
            assert (b.steps, b.status, b.end_time) == (a.steps, a.status, a.end_time)
            assert b.max_error == pytest.approx(a.max_error, rel=1e-9)
            assert b.final_error == pytest.approx(a.final_error, rel=1e-6, abs=1e-15)
        assert out.trace.row(3)["error"].max().item() == pytest.approx(out.rows[3].max_error)


def test_a_compiled_search_finds_the_same_passing_setting_and_cheaper_failing_one(backend, remembering):
    setup, target = binary(0.7, periods=0.5), 1e-3
    eager = search(setup, remembering, target)
    assert eager.rounds == 1 and eager.candidates == len(SCALES)
    fast = search(setup, remembering, target, guess=eager.estimate, compiled=True)  # the same candidates
    assert fast.candidates == len(SCALES)
    assert (fast.best.value, fast.best.steps) == (eager.best.value, eager.best.steps)
    assert fast.best.passes(target) and fast.failing is not None
    assert fast.failing.max_error > target and fast.failing.steps < fast.best.steps
    assert (fast.failing.value, fast.failing.steps) == (eager.failing.value, eager.failing.steps)


class HostSynced(DtPolicy):
    """A fixed step that reads a tensor on the host: marked compilable, but torch.compile cannot
    trace it as one graph."""

    name = "host_synced"
    parameter = "dt"
    default = 0.1
    compilable = True

    def dt(self, s):
        return self.value * float(s.time.min() >= 0)


def test_a_loop_that_fails_to_compile_runs_eagerly_with_a_one_line_warning():
    setup, policy, value = binary(0.5), PolicySpec("host_synced", HostSynced), torch.tensor([0.1], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match=r"compile: torch\.compile failed \(\w+: .*\); the simulation runs eagerly"):
        out = integrate(setup, policy, value, compiled=True)
    assert out.compile_time_s == 0
    assert out.rows == integrate(setup, policy, value).rows


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    result = CliRunner().invoke(app, ["train", "--epochs", "2", "--out", str(out), "--set", "system.params.count=8",
                                      "--set", "training.max_generalize_iters=2"])
    assert result.exit_code == 0, result.output
    return out / "model.pt"


def simulate(*args: str):
    result = CliRunner().invoke(app, ["simulate", *args])
    return result


def test_learned_policy_from_a_trained_checkpoint_through_simulate(checkpoint):
    result = simulate("-p", "e=0.5", "--periods", "1", "--checkpoint", str(checkpoint), "--policy", "freefall",
                      "--target-error", "1e-3", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    by_label = {p["label"]: p for p in report["policies"]}
    assert set(by_label) == {"freefall", "learned", "learned (unscaled)"}
    learned = by_label["learned"]
    assert learned["status"] == "finished" and learned["max_rel_energy_error"] <= 1e-3
    assert by_label["learned (unscaled)"]["value"] == 1.0
    comparison = report["comparison"]
    assert comparison["best_baseline"] == "freefall"
    assert comparison["step_ratio"] == pytest.approx(learned["steps"] / by_label["freefall"]["steps"])
    freefall = by_label["freefall"]
    for entry in (learned, freefall):  # the wall time at the searched setting is its step count times one step's cost
        assert entry["step_cost_s"] > 0 and entry["wall_time_s"] >= entry["steps"] * entry["step_cost_s"] * (1 - 1e-9)
    assert comparison["best_baseline_by_wall_time"] == "freefall"
    assert comparison["wall_time_ratio"] == pytest.approx(learned["wall_time_s"] / freefall["wall_time_s"])


def test_symmetric_learned_policy_through_simulate(checkpoint):
    result = simulate("-p", "e=0.5", "--periods", "1", "--checkpoint", str(checkpoint), "--policy", "learned=0.5",
                      "--option", "learned.symmetric=true", "--option", "learned.iterations=3", "--json")
    assert result.exit_code == 0, result.stderr
    (learned,) = json.loads(result.stdout)["policies"]
    assert learned["status"] == "finished" and learned["force_evaluations"] == 4 * learned["steps"]


def test_json_report_schema():
    result = simulate("-p", "e=0.3", "--time", "2", "--policy", "fixed=0.01", "--policy", "aarseth=1e-3", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"system", "integrator", "target_error", "policies", "comparison"}
    assert report["system"]["generator"] == "kepler_binary" and report["system"]["params"] == {"e": 0.3}
    assert report["system"]["t_end"] == 2.0 and report["integrator"] == "leapfrog"
    assert report["target_error"] is None and report["comparison"] is None
    fields = {"label": str, "policy": str, "parameter": str, "value": float, "status": str, "steps": int,
              "force_evaluations": float, "max_rel_energy_error": float, "final_rel_energy_error": float,
              "momentum_drift": float, "angular_momentum_drift": float, "end_time": float, "wall_time_s": float,
              "wall_time_estimated": bool, "step_cost_s": float}
    for entry in report["policies"]:
        assert set(fields) <= set(entry)
        for key, kind in fields.items():
            assert isinstance(entry[key], kind), key
    fixed, aarseth = report["policies"]
    assert (fixed["policy"], fixed["parameter"], fixed["value"], fixed["steps"]) == ("fixed", "dt", 0.01, 200)
    assert (aarseth["parameter"], aarseth["value"]) == ("eta", 1e-3)


def test_plot_file_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "figs" / "sim.png"
    result = simulate("-S", "figure_eight", "--periods", "0.5", "--policy", "freefall", "--plot", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "message"), [
    (["-S", "cluster", "--periods", "2"], "--periods needs a system with an orbital period"),
    (["--time", "1", "--periods", "2"], "either --time or --periods"),
    (["--policy", "freefal"], "did you mean 'freefall'"),
    (["--policy", "learned"], "needs a checkpoint"),
    (["--policy", "fixed=-1"], "must be a number > 0"),
    (["-O", "freefall_symmetric.iters=3"], "has no option 'iters'"),
    (["-p", "count=4"], "integrates one system"),
    (["--target-error", "0"], "--target-error must be > 0"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = simulate(*args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_reference_without_any_installed_names_the_plugin(monkeypatch):
    monkeypatch.setenv(registry.NO_ENTRY_POINTS_ENV, "1")
    reg = registry.collect(*registry.build_plugin_manager())
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    result = CliRunner().invoke(app, ["simulate", "--reference", "rebound_ias15"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --reference: no reference integrator is installed (plugins/aits-rebound "
                                     "provides rebound_ias15: pip install -e plugins/aits-rebound)")
