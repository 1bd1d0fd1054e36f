"""Builds name -> object tables from the plugin hooks (built-ins and entry points alike)."""

from __future__ import annotations

import difflib
import importlib
import os
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any

import pluggy

from aits import __version__, hookspecs
from aits.errors import UserError

KINDS = {
    "integrator": "aits_register_integrators",
    "features": "aits_register_features",
    "loss": "aits_register_losses",
    "initial_conditions": "aits_register_initial_conditions",
    "policy": "aits_register_policies",
    "metric_sink": "aits_register_metric_sinks",
}
BUILTIN_MODULES = (
    "aits.builtin.integrators",
    "aits.builtin.features",
    "aits.builtin.losses",
    "aits.builtin.initial_conditions",
    "aits.builtin.policies",
    "aits.builtin.sinks",
)
SHAPE_CHECKS = {
    "integrator": lambda o: callable(getattr(o, "step", None)),
    "features": lambda o: isinstance(o, type) and callable(getattr(o, "features", None)),
    "loss": callable,
    "initial_conditions": callable,
    "policy": lambda o: isinstance(o, type) and callable(getattr(o, "dt", None)),
    "metric_sink": lambda o: isinstance(o, type) and callable(getattr(o, "epoch", None)),
}
STRICT_ENV = "AITS_STRICT_PLUGINS"  # set to 1: a broken plugin is an error, not a warning
NO_ENTRY_POINTS_ENV = "AITS_NO_ENTRY_POINTS"  # set to 1: load the built-ins only


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    source: str  # "aits 0.1.0 (built-in)" or "dist-name version"

    @property
    def summary(self) -> str:
        doc = (getattr(self.obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    broken: dict[str, str] = field(default_factory=dict)  # plugin -> one-line reason

    def add(self, kind: str, obj: Any, name: str | None, source: str) -> None:
        name = name or getattr(obj, "name", None) or getattr(obj, "__name__", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {kind} was registered without a name: {obj!r}")
        if not SHAPE_CHECKS[kind](obj):
            raise TypeError(f"{kind} {name!r} does not have the {kind} interface (see aits.interfaces)")
        if name in self.entries[kind]:
            raise ValueError(f"{kind} {name!r} is registered twice: by {self.entries[kind][name].source} and by {source}")
        self.entries[kind][name] = Entry(kind, name, obj, source)

    def get(self, kind: str, name: str) -> Any:
        """The object registered under ``name``, or a :class:`UserError` listing the choices."""
        table = self.entries[kind]
        if name not in table:
            raise UserError(unknown_name_message(f"{kind.replace('_', ' ')}", name, table))
        return table[name].obj

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])


def unknown_name_message(what: str, name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} (choose from: {', '.join(sorted(choices))})"


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def build_plugin_manager() -> tuple[pluggy.PluginManager, dict[str, str], dict[str, str]]:
    """A plugin manager with the built-ins and every loadable entry point registered.

    Returns the manager, each plugin's source label and the plugins that failed to load.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[str, str] = {}
    broken: dict[str, str] = {}
    for module in BUILTIN_MODULES:
        pm.register(importlib.import_module(module), name=module)
        sources[module] = f"aits {__version__} (built-in)"
    if os.environ.get(NO_ENTRY_POINTS_ENV, "") in ("", "0"):
        for ep in metadata.entry_points(group=hookspecs.PROJECT):
            label = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.name
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a third-party plugin may fail in any way
                if _strict():
                    raise
                broken[ep.name] = f"{label}: failed to load: {type(exc).__name__}: {exc}"
                continue
            sources[ep.name] = label
    return pm, sources, broken


def collect(pm: pluggy.PluginManager, sources: dict[str, str], broken: dict[str, str]) -> Registry:
    """Call every plugin's hooks one plugin at a time, so one broken plugin cannot hide the rest."""
    registry = Registry(broken=dict(broken))
    for kind, hook_name in KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            source = sources.get(impl.plugin_name, impl.plugin_name)
            before = dict(registry.entries[kind])
            try:
                impl.function(register=lambda obj, name=None: registry.add(kind, obj, name, source))
            except Exception as exc:
                registry.entries[kind] = before  # all of a plugin's objects, or none of them
                if _strict():
                    raise
                registry.broken[impl.plugin_name] = f"{source}: {hook_name} failed: {type(exc).__name__}: {exc}"
    for name, reason in registry.broken.items():
        warnings.warn(f"aits plugin {name!r} is broken and was skipped ({reason})", stacklevel=2)
    return registry


@cache
def get_registry() -> Registry:
    """The process-wide registry (built once, on first use)."""
    return collect(*build_plugin_manager())
