"""Builds name -> object tables from the plugin hooks (built-ins and entry points alike).

Each plugin's ``aits_register`` hook is given a :class:`Registrar`, whose methods (one per kind of
object) check what is registered against :mod:`aits.interfaces`. The hooks are called one plugin at
a time: a broken plugin is skipped, with all it registered, and the rest keeps working.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any, Callable, Iterator

import pluggy

from aits import __version__, hookspecs
from aits.errors import EnvironmentFault, PluginError, UserError, clip
from aits.interfaces import DtPolicy, FeatureAdapter, InitialConditions, Integrator, Loss, MetricSink, Reference

PLUGIN_KINDS = ("integrator", "features", "loss", "initial_conditions", "policy", "metric_sink", "reference")  # also Registrar's methods
LEGACY_HOOKS = {  # deprecated per-kind hooks -> the kind their ``register(obj)`` callback adds
    "aits_register_integrators": "integrator",
    "aits_register_features": "features",
    "aits_register_losses": "loss",
    "aits_register_initial_conditions": "initial_conditions",
    "aits_register_policies": "policy",
}
BUILTIN_MODULES = (
    "aits.builtin.integrators",
    "aits.builtin.features",
    "aits.builtin.losses",
    "aits.builtin.initial_conditions",
    "aits.builtin.policies",
    "aits.builtin.sinks",
)
STRICT_ENV = "AITS_STRICT_PLUGINS"  # set to 1: a broken plugin is an error, not a warning
NO_ENTRY_POINTS_ENV = "AITS_NO_ENTRY_POINTS"  # set to 1: load the built-ins only


@dataclass(frozen=True)
class Registered:
    """One registered object, under its name, and the plugin it comes from."""

    kind: str
    name: str
    obj: Any
    source: str  # "aits 0.1.0 (built-in)" or "dist-name version"

    @property
    def summary(self) -> str:
        """The first sentence of the docstring's first paragraph, on one line."""
        paragraph = (getattr(self.obj, "__doc__", None) or "").strip().split("\n\n")[0]
        text = " ".join(paragraph.split())
        end = text.find(". ")
        return text if end < 0 else text[: end + 1]


@dataclass
class Registry:
    entries: dict[str, dict[str, Registered]] = field(default_factory=lambda: {k: {} for k in PLUGIN_KINDS})
    broken: dict[str, str] = field(default_factory=dict)  # plugin -> one-line reason

    def get(self, kind: str, name: str) -> Any:
        """The object registered under ``name``, or a :class:`UserError` listing the choices."""
        table = self.entries[kind]
        if name not in table:
            raise UserError(unknown_name_message(f"{kind.replace('_', ' ')}", name, table))
        return table[name].obj

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])


Requirement = tuple[str, Callable[[Any], bool]]  # what is required, and the test
POSITIVE_INT: Requirement = ("a positive int", lambda v: type(v) is int and v > 0)
POSITIVE: Requirement = ("a positive number", lambda v: type(v) in (int, float) and v > 0)
FLAG: Requirement = ("True or False", lambda v: isinstance(v, bool))
TEXT: Requirement = ("a non-empty string", lambda v: isinstance(v, str) and bool(v))


def _declares(base: type, cls: type, **required: Requirement) -> str | None:
    """What ``cls`` fails to declare of its interface ``base``'s class attributes, or None."""
    for attr, (what, test) in required.items():
        if not test(getattr(cls, attr, None)):
            return f"does not declare {attr} ({what}; see aits.interfaces.{base.__name__})"
    return None


def _instance_of(base: type, obj: Any) -> str | None:
    return None if isinstance(obj, base) else f"is not an instance of aits.interfaces.{base.__name__}"


def _subclass_of(base: type, obj: Any) -> str | None:
    if isinstance(obj, type) and issubclass(obj, base):
        return None
    return f"is not a subclass of aits.interfaces.{base.__name__}"


def _check_integrator(obj: Any) -> str | None:
    return _instance_of(Integrator, obj) or _declares(Integrator, type(obj), order=POSITIVE_INT,
                                                      force_evaluations=POSITIVE_INT, free_end_positions=FLAG)


def _check_features(obj: Any) -> str | None:
    return _subclass_of(FeatureAdapter, obj)


def _check_loss(obj: Any) -> str | None:
    return _instance_of(Loss, obj)


def _check_initial_conditions(obj: Any) -> str | None:
    if not callable(obj):
        return "is not callable (see aits.interfaces.InitialConditions)"
    params = inspect.signature(obj).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [k for k in ("G", "rng") if k not in params and not takes_any]
    return f"does not take the keyword {missing[0]} (see aits.interfaces.InitialConditions)" if missing else None


def _check_policy(obj: Any) -> str | None:
    return _subclass_of(DtPolicy, obj) or _declares(DtPolicy, obj, parameter=TEXT, default=POSITIVE,
                                                    compilable=FLAG, selectable=FLAG)


def _check_metric_sink(obj: Any) -> str | None:
    return _subclass_of(MetricSink, obj)


def _check_reference(obj: Any) -> str | None:
    return _instance_of(Reference, obj)


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "integrator": _check_integrator,
    "features": _check_features,
    "loss": _check_loss,
    "initial_conditions": _check_initial_conditions,
    "policy": _check_policy,
    "metric_sink": _check_metric_sink,
    "reference": _check_reference,
}


class Registrar:
    """What a plugin's ``aits_register`` hook is given: one method per kind of object.

    Each method checks the object against its interface in :mod:`aits.interfaces` and raises a
    :class:`~aits.errors.PluginError` naming the plugin when it does not fit or its name is taken.
    ``name`` defaults to the object's ``name`` (a function's ``__name__``).
    """

    def __init__(self, registry: Registry, plugin: str, source: str) -> None:
        self._registry, self.plugin, self.source = registry, plugin, source

    def integrator(self, obj: Integrator, name: str | None = None) -> None:
        """An :class:`~aits.interfaces.Integrator` instance."""
        self._add("integrator", obj, name)

    def features(self, cls: type[FeatureAdapter], name: str | None = None) -> None:
        """A :class:`~aits.interfaces.FeatureAdapter` subclass (built per run)."""
        self._add("features", cls, name)

    def loss(self, obj: Loss, name: str | None = None) -> None:
        """A :class:`~aits.interfaces.Loss` instance."""
        self._add("loss", obj, name)

    def initial_conditions(self, fn: InitialConditions, name: str | None = None) -> None:
        """A generator ``f(*, G, rng, **params) -> (pos, vel, mass)``."""
        self._add("initial_conditions", fn, name)

    def policy(self, cls: type[DtPolicy], name: str | None = None) -> None:
        """A :class:`~aits.interfaces.DtPolicy` subclass (built per simulation)."""
        self._add("policy", cls, name)

    def metric_sink(self, cls: type[MetricSink], name: str | None = None) -> None:
        """A :class:`~aits.interfaces.MetricSink` subclass (built per run)."""
        self._add("metric_sink", cls, name)

    def reference(self, obj: Reference, name: str | None = None) -> None:
        """A :class:`~aits.interfaces.Reference` instance (an outside integrator for ``aits simulate``)."""
        self._add("reference", obj, name)

    def _add(self, kind: str, obj: Any, name: str | None) -> None:
        name = name or getattr(obj, "name", None) or getattr(obj, "__name__", None)
        if not isinstance(name, str) or not name:
            raise PluginError(self.plugin, self.source, f"registered a {kind} without a name: {obj!r}")
        problem = CHECKS[kind](obj)
        if problem:
            raise PluginError(self.plugin, self.source, f"{kind} {name!r} {problem}")
        table = self._registry.entries[kind]
        if name in table:
            raise PluginError(self.plugin, self.source,
                              f"{kind} {name!r} is registered twice: by {table[name].source} and by {self.source}")
        table[name] = Registered(kind, name, obj, self.source)


def unknown_name_message(what: str, name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} (choose from: {', '.join(sorted(choices))})"


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def _fail_if_strict(name: str, reason: str) -> None:
    """With ``AITS_STRICT_PLUGINS`` set, a broken plugin is a one-line error (exit 1)."""
    if _strict():
        raise EnvironmentFault(f"aits plugin {name!r} is broken ({reason}); unset {STRICT_ENV} to skip it")


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
                broken[ep.name] = f"{label}: failed to load: {type(exc).__name__}: {clip(str(exc))}"
                _fail_if_strict(ep.name, broken[ep.name])
                continue
            sources[ep.name] = label
    return pm, sources, broken


def _hooks_of(pm: pluggy.PluginManager, plugin: str) -> Iterator[tuple[str, Callable[..., None]]]:
    """The plugin's ``aits_register`` implementation, then the deprecated per-kind hooks it implements."""
    for hook_name in ("aits_register", *LEGACY_HOOKS):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name == plugin:
                yield hook_name, impl.function


def _call(hook_name: str, function: Callable[..., None], registrar: Registrar) -> None:
    if hook_name == "aits_register":
        function(registrar=registrar)
        return
    kind = LEGACY_HOOKS[hook_name]
    warnings.warn(f"aits plugin {registrar.plugin!r} ({registrar.source}) uses the deprecated hook "
                  f"{hook_name}(register); implement aits_register(registrar) and call registrar.{kind}(...)",
                  DeprecationWarning, stacklevel=3)
    function(register=getattr(registrar, kind))


def collect(pm: pluggy.PluginManager, sources: dict[str, str], broken: dict[str, str]) -> Registry:
    """Call every plugin's hooks one plugin at a time, so one broken plugin cannot hide the rest."""
    registry = Registry(broken=dict(broken))
    for plugin, _ in pm.list_name_plugin():
        registrar = Registrar(registry, plugin, sources.get(plugin, plugin))
        before = {kind: dict(table) for kind, table in registry.entries.items()}
        for hook_name, function in _hooks_of(pm, plugin):
            try:
                _call(hook_name, function, registrar)
            except Exception as exc:  # a third-party plugin may fail in any way
                registry.entries = before  # all of a plugin's objects, or none of them
                if isinstance(exc, PluginError) and _strict():
                    raise
                why = exc.detail if isinstance(exc, PluginError) else \
                    f"{hook_name} failed: {type(exc).__name__}: {clip(str(exc))}"
                registry.broken[plugin] = f"{registrar.source}: {why}"
                _fail_if_strict(plugin, registry.broken[plugin])
                break
    for name, reason in registry.broken.items():
        warnings.warn(f"aits plugin {name!r} is broken and was skipped ({reason})", stacklevel=2)
    return registry


@cache
def get_registry() -> Registry:
    """The process-wide registry (built once, on first use)."""
    return collect(*build_plugin_manager())
