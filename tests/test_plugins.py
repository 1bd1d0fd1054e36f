"""The plugin registry: built-ins, the example Yoshida plugin through the real hooks, broken and
duplicate plugins, strict mode and name suggestions."""

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
from conftest import FakeDist, FakeEntryPoint
from aits.builtin.integrators import Leapfrog
from aits.errors import UserError
from aits.hookspecs import hookimpl
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems, initial, kepler

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "aits-yoshida" / "src"
BUILTIN = f"aits {aits.__version__} (built-in)"
YOSHIDA_SOURCE = "aits-yoshida 0.1.0"



def entry_point(name: str, plugin: Any, dist: str = "some-plugin 1.0") -> FakeEntryPoint:
    return FakeEntryPoint(name, lambda: plugin, FakeDist(*dist.split()))


def plugin_module(name: str, **hooks: Callable[..., None]) -> types.ModuleType:
    """A module with the given functions as hook implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def registers_integrator(name: str, cls: type) -> types.ModuleType:
    """A plugin module whose integrator hook registers one ``cls()``."""
    return plugin_module(name, aits_register_integrators=lambda register: register(cls()))


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
    "features": ["analytic", "history"],
    "loss": ["energy_band", "energy_target", "gate_hinge"],
    "initial_conditions": ["binary_batch", "cluster", "figure_eight", "from_file", "kepler_binary", "pythagorean"],
    "metric_sink": ["jsonl", "tensorboard"],
}


def test_builtins_are_registered_through_the_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.NO_ENTRY_POINTS_ENV, "1")
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: pytest.fail("entry points were read"))
    reg = registry.collect(*registry.build_plugin_manager())
    assert not reg.broken
    for kind, names in BUILTINS.items():
        assert set(names) <= set(reg.names(kind)), kind
        for name in names:
            entry = reg.entries[kind][name]
            assert entry.source == BUILTIN and entry.summary, (kind, name)  # `aits plugins` shows both
    assert isinstance(reg.get("integrator", "leapfrog"), Leapfrog)


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


# ---------------------------------------------------------------- broken plugins


class NoStep:
    """An integrator without ``step``."""

    name = "no_step"


def _raise(error: Exception) -> Callable[..., None]:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    return fail


BROKEN: dict[str, tuple[FakeEntryPoint, type[Exception], str]] = {
    "import_fails": (
        FakeEntryPoint("bad", _raise(ImportError("No module named 'missing_dep'")), FakeDist("bad-plugin", "0.1")),
        ImportError,
        "bad-plugin 0.1: failed to load: ImportError: No module named 'missing_dep'",
    ),
    "no_step": (
        entry_point("bad", registers_integrator("bad", NoStep), "bad-plugin 0.1"),
        TypeError,
        "integrator 'no_step' does not have the integrator interface",
    ),
    "hook_raises": (
        entry_point("bad", plugin_module("bad", aits_register_losses=_raise(RuntimeError("boom"))), "bad-plugin 0.1"),
        RuntimeError,
        "aits_register_losses failed: RuntimeError: boom",
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
    assert "no_step" not in reg.names("integrator")
    assert {"leapfrog", "yoshida4"} <= set(reg.names("integrator"))  # the rest still works
    assert set(BUILTINS["loss"]) <= set(reg.names("loss"))


@pytest.mark.parametrize("case", BROKEN)
def test_strict_mode_raises_on_a_broken_plugin(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    broken, error, _ = BROKEN[case]
    monkeypatch.setenv(registry.STRICT_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # strict mode raises instead of warning
        with pytest.raises(error):
            build(monkeypatch, broken)


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
    dup = entry_point("dup", registers_integrator("dup", cls or yoshida.Yoshida4), "dup-plugin 2.0")
    plugins = (entry_point("yoshida", yoshida, YOSHIDA_SOURCE), dup)
    if strict:
        monkeypatch.setenv(registry.STRICT_ENV, "1")
        with pytest.raises(ValueError, match=message) as info:
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
        ("features", "zzz", r"unknown features 'zzz' \(choose from: analytic, history\)"),
    ],
)
def test_unknown_name_suggests_the_closest(
    monkeypatch: pytest.MonkeyPatch, yoshida: types.ModuleType, kind: str, name: str, match: str
) -> None:
    reg = build(monkeypatch, entry_point("yoshida", yoshida, YOSHIDA_SOURCE))
    with pytest.raises(UserError, match=match):
        reg.get(kind, name)
