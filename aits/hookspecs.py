"""The hooks through which built-in and third-party plugins add things to aits.

A plugin implements ``aits_register(registrar)`` and calls one method of the
:class:`~aits.registry.Registrar` per object it provides, for instance::

    @hookimpl
    def aits_register(registrar):
        registrar.integrator(Yoshida4())

Each object is checked against its interface in :mod:`aits.interfaces` when it is registered:

* ``registrar.integrator(obj)``: an :class:`~aits.interfaces.Integrator` instance;
* ``registrar.features(cls)``: a :class:`~aits.interfaces.FeatureAdapter` subclass (built per run);
* ``registrar.loss(obj)``: a :class:`~aits.interfaces.Loss` instance;
* ``registrar.initial_conditions(fn)``: a function ``f(*, G, rng, **params) -> (pos, vel, mass)``
  (:class:`~aits.interfaces.InitialConditions`);
* ``registrar.policy(cls)``: a :class:`~aits.interfaces.DtPolicy` subclass (built per simulation);
* ``registrar.metric_sink(cls)``: a :class:`~aits.interfaces.MetricSink` subclass (built per run);
* ``registrar.reference(obj)``: a :class:`~aits.interfaces.Reference` instance (an outside
  integrator that ``aits simulate --reference`` runs beside the dt policies).

The name is the object's ``name`` (a function's ``__name__``) unless given as ``name="..."``.
Third-party packages expose a module or object with these hook implementations under the
entry-point group ``aits``.

The per-kind hooks of aits 0.1 (``aits_register_integrators(register)`` and the like, each calling
``register(obj)``) still work, with a :class:`DeprecationWarning` naming the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from aits.registry import Registrar

PROJECT = "aits"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def aits_register(registrar: Registrar) -> None:
    """Register integrators, feature adapters, losses, initial conditions, dt policies, metric sinks
    and reference integrators."""


# Deprecated: one hook per kind, each given a callback ``register(obj, name=None)``.
LegacyRegister = Callable[..., Any]


@hookspec
def aits_register_integrators(register: LegacyRegister) -> None:
    """Deprecated: use ``aits_register(registrar)`` and ``registrar.integrator(obj)``."""


@hookspec
def aits_register_features(register: LegacyRegister) -> None:
    """Deprecated: use ``aits_register(registrar)`` and ``registrar.features(cls)``."""


@hookspec
def aits_register_losses(register: LegacyRegister) -> None:
    """Deprecated: use ``aits_register(registrar)`` and ``registrar.loss(obj)``."""


@hookspec
def aits_register_initial_conditions(register: LegacyRegister) -> None:
    """Deprecated: use ``aits_register(registrar)`` and ``registrar.initial_conditions(fn)``."""


@hookspec
def aits_register_policies(register: LegacyRegister) -> None:
    """Deprecated: use ``aits_register(registrar)`` and ``registrar.policy(cls)``."""
