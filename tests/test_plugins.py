"""The plugin registry: built-ins, a fake plugin of every kind (registered, then trained and
simulated with), the deprecated per-kind hooks, the example Yoshida plugin through the real hooks
(and trained with), broken and duplicate plugins, strict mode and name suggestions."""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

import aits
from aits import registry
from aits.builtin.integrators import Leapfrog
from aits.errors import EnvironmentFault, PluginError, UserError
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems, initial, kepler
from aits.simulation.engine import integrate
from aits.simulation.problem import PolicySpec, Setup
from aits.training.run import RunDir, run_epochs
from aits.training.build import build_trainer
from conftest import FakeDist, FakeEntryPoint, small_config
from plugin_fakes import FAKES, Collecting, Constant, every_fake, legacy, plugin_module, registering

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "aits-yoshida" / "src"
BUILTIN = f"aits {aits.__version__} (built-in)"
YOSHIDA_SOURCE = "aits-yoshida 0.1.0"


def entry_point(name: str, plugin: Any, dist: str = "some-plugin 1.0") -> FakeEntryPoint:
    return FakeEntryPoint(name, lambda: plugin, FakeDist(*dist.split()))


def build(monkeypatch: pytest.MonkeyPatch, *entry_points: FakeEntryPoint) -> registry.Registry:
    """A fresh registry from the built-ins and exactly these entry points."""
    monkeypatch.delenv(registry.NO_ENTRY_POINTS_ENV, raising=False)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: list(entry_points) if group == "aits" else [])
    return registry.collect(*registry.build_plugin_manager())


@pytest.fixture(autouse=True)
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry.STRICT_ENV, raising=False)


@pytest.fixture
def yoshida(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The example plugin's module, imported from its source tree (no install needed)."""
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    previous = sys.modules.pop("aits_yoshida", None)
    yield importlib.import_module("aits_yoshida")
    sys.modules.pop("aits_yoshida", None)
    if previous is not None:
        sys.modules["aits_yoshida"] = previous


# ---------------------------------------------------------------- built-ins

BUILTINS = {
    "integrator": ["leapfrog"],
    "features": ["analytic", "analytic_aarseth", "history"],
    "loss": ["energy_band", "energy_target", "gate_hinge"],
    "initial_conditions": ["binary_batch", "cluster", "figure_eight", "flyby", "from_file", "hierarchical_triple",
                           "kepler_binary", "planetary_system", "plummer", "pythagorean"],
    "policy": ["aarseth", "fixed", "freefall", "freefall_symmetric", "learned"],
    "metric_sink": ["jsonl", "tensorboard"],
    "reference": [],  # outside integrators come from plugins (plugins/aits-rebound)
}


def test_builtins_are_registered_through_the_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.NO_ENTRY_POINTS_ENV, "1")
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: pytest.fail("entry points were read"))
    reg = registry.collect(*registry.build_plugin_manager())
    assert not reg.broken
    assert set(BUILTINS) == set(registry.PLUGIN_KINDS)
    for kind, names in BUILTINS.items():
        assert set(names) <= set(reg.names(kind)), kind
        for name in names:
            entry = reg.entries[kind][name]
            assert entry.source == BUILTIN and entry.summary, (kind, name)  # `aits plugins` shows both
    assert isinstance(reg.get("integrator", "leapfrog"), Leapfrog)


def test_a_summary_is_the_first_sentence_of_the_docstring_on_one_line() -> None:
    class Wrapped:
        """A rule whose first sentence
        runs over two lines (eta = 0.1). More detail.

        A second paragraph."""

    class Bare:
        pass

    assert registry.Registered("policy", "wrapped", Wrapped, "x").summary == \
        "A rule whose first sentence runs over two lines (eta = 0.1)."
    assert registry.Registered("policy", "bare", Bare, "x").summary == ""


# ---------------------------------------------------------------- a fake plugin of every kind

FAKES_SOURCE = "fake-plugins 1.0"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> registry.Registry:
    """The registry with the built-ins and the fake plugin, as every part of aits sees it."""
    reg = build(monkeypatch, entry_point("fakes", every_fake(), FAKES_SOURCE))
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    return reg


def test_a_fake_of_every_kind_is_registered_with_its_source(fakes: registry.Registry) -> None:
    assert not fakes.broken and set(FAKES) == set(registry.PLUGIN_KINDS)
    for kind, (name, obj) in FAKES.items():
        entry = fakes.entries[kind][name]
        assert (entry.obj, entry.source) == (obj, FAKES_SOURCE) and entry.summary, kind


def test_training_and_simulating_use_the_fake_plugins(fakes: registry.Registry, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = build_trainer(small_config("integrator=symplectic_euler", "features.adapter=separation",
                                   "training.loss=overshoot", "system.generator=circular_pair",
                                   "system.params={count: 3}", "training.steps_per_epoch=2",
                                   "logging.sinks=[collecting]"))
    assert trainer.integrator is FAKES["integrator"][1] and trainer.stepper.loss_fn is FAKES["loss"][1]
    assert type(trainer.adapter) is FAKES["features"][1] and trainer.population.systems.batch == 3
    monkeypatch.setattr(Collecting, "epochs", [])
    run_epochs(trainer, RunDir(tmp_path), 1)  # the fakes' steps pass the gate and train the fake features
    part1 = trainer.metrics[0]["part1"]
    assert part1["accepted"] == 3 * 2 and part1["rel_dE_max"] < trainer.config.training.energy_threshold
    assert Collecting.epochs == trainer.metrics  # the fake sink got the epoch
    # the constant step integrates the circular orbit (period pi / sqrt(2)) for one time unit
    setup = Setup(trainer.population.systems.index(slice(0, 1)), torch.ones(1, dtype=torch.float64), trainer.gravity,
                  trainer.integrator)
    out = integrate(setup, PolicySpec("constant", fakes.get("policy", "constant")),
                    torch.tensor([0.01], dtype=torch.float64))
    row = out.rows[0]
    assert (row.status, row.steps, row.end_time) == ("finished", 100, pytest.approx(1.0))
    assert row.max_error < 1e-3  # first order, but symplectic: the energy error stays bounded
    reference = fakes.get("reference", "hundred_steps").run(setup.systems.with_(time=torch.zeros(1, dtype=torch.float64)),
                                                             1.0, trainer.gravity)
    assert (reference.steps, reference.end_time) == (100, pytest.approx(1.0)) and reference.max_error < 1e-2


@pytest.mark.parametrize("hook_name", registry.LEGACY_HOOKS)
def test_the_deprecated_per_kind_hooks_still_register_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, hook_name: str
) -> None:
    kind = registry.LEGACY_HOOKS[hook_name]
    name, obj = FAKES[kind]
    with pytest.warns(DeprecationWarning, match=rf"aits plugin 'old' \(old-plugin 1\.0\) uses the deprecated "
                                                 rf"hook {hook_name}\(register\).*registrar\.{kind}\("):
        reg = build(monkeypatch, entry_point("old", legacy(hook_name, obj), "old-plugin 1.0"))
    assert not reg.broken and reg.entries[kind][name].source == "old-plugin 1.0"


# ---------------------------------------------------------------- the Yoshida plugin


def test_yoshida_is_found_through_an_entry_point(monkeypatch: pytest.MonkeyPatch, yoshida: types.ModuleType) -> None:
    reg = build(monkeypatch, entry_point("yoshida", yoshida, YOSHIDA_SOURCE))
    assert not reg.broken
    entry = reg.entries["integrator"]["yoshida4"]
    assert entry.source == YOSHIDA_SOURCE and "4th order" in entry.summary
    integrator = reg.get("integrator", "yoshida4")
    assert isinstance(integrator, Integrator) and (integrator.order, integrator.force_evaluations) == (4, 3)
    assert reg.entries["integrator"]["leapfrog"].source == BUILTIN


def test_yoshida_registers_on_a_plugin_manager(monkeypatch: pytest.MonkeyPatch, yoshida: types.ModuleType) -> None:
    monkeypatch.setenv(registry.NO_ENTRY_POINTS_ENV, "1")
    pm, sources, broken = registry.build_plugin_manager()
    pm.register(yoshida, name="yoshida")
    reg = registry.collect(pm, {**sources, "yoshida": YOSHIDA_SOURCE}, broken)
    assert reg.entries["integrator"]["yoshida4"].source == YOSHIDA_SOURCE
    assert reg.names("integrator") == ["leapfrog", "yoshida4"]


def test_installed_yoshida_entry_point_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aits_yoshida")
    try:
        metadata.distribution("aits-yoshida")
    except metadata.PackageNotFoundError:
        pytest.skip("aits_yoshida is importable but not installed")
    monkeypatch.delenv(registry.NO_ENTRY_POINTS_ENV, raising=False)
    pm, sources, broken = registry.build_plugin_manager()
    assert sources["yoshida"] == YOSHIDA_SOURCE and "yoshida" not in broken
    reg = registry.collect(pm, sources, broken)
    assert reg.entries["integrator"]["yoshida4"].source == YOSHIDA_SOURCE


def kepler_run(integrator: Integrator, steps: int, direction: float = 1.0, s: Systems | None = None):
    """``steps`` fixed steps of T/steps on an e = 0.5 binary (or ``s``): final state, max |dE/E|."""
    g = Gravity()
    s = s or g.initialise(*initial.kepler_binary(G=1.0, rng=torch.Generator(), e=0.5))
    dt = torch.full((s.batch,), direction * kepler.period(1.0, 2.0) / steps, dtype=torch.float64)
    e0, worst = g.energy(s), torch.zeros(s.batch, dtype=torch.float64)
    for _ in range(steps):
        s = integrator.step(s, dt, g)
        worst = torch.maximum(worst, ((g.energy(s) - e0) / e0).abs())
    return s, worst.max().item()


def test_yoshida_is_fourth_order(yoshida: types.ModuleType) -> None:
    coarse, fine = kepler_run(yoshida.Yoshida4(), 100)[1], kepler_run(yoshida.Yoshida4(), 200)[1]
    assert 14 < coarse / fine < 18
    # and it pays for its three force evaluations: better than leapfrog at the same cost
    assert fine < kepler_run(Leapfrog(), 600)[1] / 10


def test_yoshida_is_time_reversible(yoshida: types.ModuleType) -> None:
    integrator = yoshida.Yoshida4()
    start = Gravity().initialise(*initial.cluster(G=1.0, rng=torch.Generator().manual_seed(0), count=2, n=4))
    there, _ = kepler_run(integrator, 100, 1.0, start)
    back, _ = kepler_run(integrator, 100, -1.0, there)
    assert (there.pos - start.pos).abs().max() > 1e-2
    torch.testing.assert_close(back.pos, start.pos, rtol=0, atol=1e-12)
    torch.testing.assert_close(back.vel, start.vel, rtol=0, atol=1e-12)


def test_training_with_yoshida4_steps_every_system_with_it(
    monkeypatch: pytest.MonkeyPatch, yoshida: types.ModuleType
) -> None:
    """Each step that Part 1 accepts (its pre-step state and dt are in the replay buffer) leads, by
    a Yoshida step, to the next accepted state of its system or to its final state; by a leapfrog
    step, to none of them."""
    reg = build(monkeypatch, entry_point("yoshida", yoshida, YOSHIDA_SOURCE))
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    trainer = build_trainer(small_config("integrator=yoshida4", "training.steps_per_epoch=3"))
    assert type(trainer.integrator) is yoshida.Yoshida4
    stats = trainer.collect()
    assert stats["accepted"] == trainer.population.buffer.size == 8 * 3
    assert stats["rel_dE_max"] < trainer.config.training.energy_threshold
    states, _, _, _ = trainer.population.buffer.gather(torch.arange(trainer.population.buffer.size))
    dt = trainer.population.buffer.data["dt"][: trainer.population.buffer.size]
    reached = torch.cat([states.pos, trainer.population.systems.pos])  # every state after a system's first
    for integrator, follows in ((yoshida.Yoshida4(), True), (Leapfrog(), False)):
        ends = integrator.step(states, dt, trainer.gravity).pos
        gap = (ends[:, None] - reached[None]).abs().amax((2, 3)).amin(1)  # to the closest reached state
        assert bool((gap < 1e-12).all()) if follows else bool((gap > 1e-9).all()), type(integrator).__name__


# ---------------------------------------------------------------- broken plugins


class NoStep:
    """An integrator without ``step``."""

    name = "no_step"


class Orderless(Integrator):
    """An integrator that does not declare its order."""

    name = "orderless"
    force_evaluations = 1

    def step(self, s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        return s


def squared(rel_dE: torch.Tensor, config: Any) -> torch.Tensor:
    """A loss written as a plain function, not a Loss."""
    return rel_dE**2


def no_rng(*, G: float, count: int = 1) -> tuple[torch.Tensor, ...]:
    """Initial conditions that do not take the run's generator."""
    return initial.figure_eight(G=G, rng=torch.Generator(), count=count)


class Parameterless(Constant):
    """A policy without a parameter to search."""

    name = "parameterless"
    parameter = ""


def _raise(error: Exception) -> Callable[..., None]:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    return fail


def first_good_then(kind: str, obj: Any) -> FakeEntryPoint:
    """A plugin 'bad' that registers a good policy, then ``obj`` as a ``kind``."""
    return entry_point("bad", registering("bad", ("policy", Constant), (kind, obj)), "bad-plugin 0.1")


BROKEN: dict[str, tuple[FakeEntryPoint, type[Exception], str]] = {
    "import_fails": (
        FakeEntryPoint("bad", _raise(ImportError("No module named 'missing_dep'")), FakeDist("bad-plugin", "0.1")),
        ImportError,
        "bad-plugin 0.1: failed to load: ImportError: No module named 'missing_dep'",
    ),
    "no_step": (first_good_then("integrator", NoStep()), PluginError,
                "bad-plugin 0.1: integrator 'no_step' is not an instance of aits.interfaces.Integrator"),
    "no_order": (first_good_then("integrator", Orderless()), PluginError,
                 "integrator 'orderless' does not declare order (a positive int; see aits.interfaces.Integrator)"),
    "adapter_instance": (first_good_then("features", FAKES["features"][1](Gravity())), PluginError,
                         "features 'separation' is not a subclass of aits.interfaces.FeatureAdapter"),
    "loss_function": (first_good_then("loss", squared), PluginError,
                      "loss 'squared' is not an instance of aits.interfaces.Loss"),
    "no_rng": (first_good_then("initial_conditions", no_rng), PluginError,
               "initial_conditions 'no_rng' does not take the keyword rng"),
    "no_parameter": (first_good_then("policy", Parameterless), PluginError,
                     "policy 'parameterless' does not declare parameter (a non-empty string"),
    "hook_raises": (
        entry_point("bad", plugin_module("bad", aits_register=_raise(RuntimeError("boom"))), "bad-plugin 0.1"),
        RuntimeError,
        "bad-plugin 0.1: aits_register failed: RuntimeError: boom",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_plugin_is_reported_and_skipped(
    monkeypatch: pytest.MonkeyPatch, yoshida: types.ModuleType, case: str
) -> None:
    broken, _, reason = BROKEN[case]
    with pytest.warns(UserWarning, match=r"aits plugin 'bad' is broken and was skipped") as caught:
        reg = build(monkeypatch, broken, entry_point("yoshida", yoshida, YOSHIDA_SOURCE))
    assert reason in reg.broken["bad"] and reason in str(caught[0].message)
    assert list(reg.broken) == ["bad"]
    assert "constant" not in reg.names("policy")  # all of a plugin's objects, or none
    assert not {"no_step", "orderless"} & set(reg.names("integrator"))
    assert {"leapfrog", "yoshida4"} <= set(reg.names("integrator"))  # the rest still works
    assert set(BUILTINS["loss"]) <= set(reg.names("loss"))


@pytest.mark.parametrize("case", BROKEN)
def test_strict_mode_raises_on_a_broken_plugin(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    broken, error, reason = BROKEN[case]
    monkeypatch.setenv(registry.STRICT_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # strict mode raises instead of warning
        with pytest.raises(PluginError if error is PluginError else EnvironmentFault) as info:
            build(monkeypatch, broken)
    message = str(info.value)  # one line naming the plugin and the cause, not the plugin's own exception
    assert "\n" not in message
    if error is PluginError:  # a user error (one line, exit 2) naming the plugin and what is wrong
        assert message.startswith("aits plugin 'bad' (bad-plugin 0.1): ")
        assert reason.removeprefix("bad-plugin 0.1: ") in message
    else:  # the plugin failed in its own way: a problem of the installation (exit 1)
        assert "aits plugin 'bad' is broken" in message and reason in message and error.__name__ in message


class SecondLeapfrog(Leapfrog):
    """A plugin's own integrator that happens to be called leapfrog."""


DUPLICATES = {
    "of_a_builtin": (SecondLeapfrog, "integrator 'leapfrog' is registered twice", BUILTIN),
    "between_plugins": (None, "integrator 'yoshida4' is registered twice", YOSHIDA_SOURCE),  # None: Yoshida4
}


@pytest.mark.parametrize("case", DUPLICATES)
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_duplicate_names_fail_naming_both_sources(
    monkeypatch: pytest.MonkeyPatch, yoshida: types.ModuleType, case: str, strict: bool
) -> None:
    cls, message, first = DUPLICATES[case]
    dup = entry_point("dup", registering("dup", ("integrator", (cls or yoshida.Yoshida4)())), "dup-plugin 2.0")
    plugins = (entry_point("yoshida", yoshida, YOSHIDA_SOURCE), dup)
    if strict:
        monkeypatch.setenv(registry.STRICT_ENV, "1")
        with pytest.raises(PluginError, match=message) as info:
            build(monkeypatch, *plugins)
        text = str(info.value)
    else:
        with pytest.warns(UserWarning, match="aits plugin 'dup' is broken"):
            text = build(monkeypatch, *plugins).broken["dup"]
    assert message in text and first in text and "dup-plugin 2.0" in text


# ---------------------------------------------------------------- lookups


@pytest.mark.parametrize(
    ("kind", "name", "match"),
    [
        ("integrator", "leapfrg", r"unknown integrator 'leapfrg'; did you mean 'leapfrog'\?"),
        ("integrator", "yoshida", r"did you mean 'yoshida4'\?.*choose from: leapfrog, yoshida4"),
        ("loss", "energy-band", r"unknown loss 'energy-band'; did you mean 'energy_band'\?"),
        ("initial_conditions", "kepler", r"unknown initial conditions 'kepler'; did you mean 'kepler_binary'\?"),
        ("features", "zzz", r"unknown features 'zzz' \(choose from: analytic, analytic_aarseth, history\)"),
    ],
)
def test_unknown_name_suggests_the_closest(
    monkeypatch: pytest.MonkeyPatch, yoshida: types.ModuleType, kind: str, name: str, match: str
) -> None:
    reg = build(monkeypatch, entry_point("yoshida", yoshida, YOSHIDA_SOURCE))
    with pytest.raises(UserError, match=match):
        reg.get(kind, name)
