"""The hooks through which built-in and third-party plugins add things to aits.

Each hook receives a ``register`` callback; call it once per object provided, as
``register(obj)`` (the name is ``obj.name``) or ``register(obj, name="...")``. Objects are:

* integrators: :class:`aits.interfaces.Integrator` instances;
* feature adapters: :class:`aits.interfaces.FeatureAdapter` subclasses (constructed per run);
* losses: :class:`aits.interfaces.Loss` instances;
* initial conditions: functions ``f(*, G, rng, **params) -> (pos, vel, mass)``;
* dt policies: :class:`aits.interfaces.DtPolicy` subclasses (constructed per simulation);
* metric sinks: :class:`aits.interfaces.MetricSink` subclasses (constructed per run).

Third-party packages expose a module or object with these hook implementations under the
entry-point group ``aits``.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "aits"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., Any]


@hookspec
def aits_register_integrators(register: Register) -> None:
    """Register integrators (``Integrator.step(state, dt, gravity) -> state``)."""


@hookspec
def aits_register_features(register: Register) -> None:
    """Register feature adapters (``FeatureAdapter.features(state, history) -> Tensor``)."""


@hookspec
def aits_register_losses(register: Register) -> None:
    """Register training losses (``Loss(rel_dE, config) -> per-sample loss``)."""


@hookspec
def aits_register_initial_conditions(register: Register) -> None:
    """Register initial-condition generators (``f(*, G, rng, **params) -> (pos, vel, mass)``)."""


@hookspec
def aits_register_policies(register: Register) -> None:
    """Register dt policies for ``aits simulate`` (learned, fixed, classical rules, ...)."""


@hookspec
def aits_register_metric_sinks(register: Register) -> None:
    """Register metric sinks (``MetricSink(run_dir)``: config at the start, each epoch, the summary)."""
