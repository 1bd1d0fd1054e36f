"""Systems from an initial-condition generator and the user's ``system.params``: the parameters
checked against the generator's signature and coerced like config values, the result checked."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

import torch

from aits.config import coerce
from aits.errors import UserError, suggestion
from aits.physics import Gravity, Systems

COERCED = (int, float, str, bool)  # annotated parameters of other types pass unchanged


def coerce_params(generator: Callable, name: str, params: dict, key: str = "system.params") -> dict:
    """``params`` (config key ``key``) converted to the types the generator ``name`` annotates, or a
    one-line error naming the key."""
    try:
        hints = typing.get_type_hints(generator)
    except Exception:  # a plugin's annotations may not resolve; then nothing is checked
        return dict(params)
    return {k: coerce(value, hints[k], f"{key}.{k} for {name}") if hints.get(k) in COERCED else value
            for k, value in params.items()}


def make_systems(generator: Callable, params: dict, gravity: Gravity, rng: torch.Generator, dtype: torch.dtype,
                 device: torch.device, key: str = "system.params") -> Systems:
    """Call an initial-condition generator with user ``params`` (config key ``key``, checked against its
    signature) and return initialised :class:`Systems` on ``device`` in ``dtype``."""
    name = getattr(generator, "__name__", "generator")
    accepted = [p for p in inspect.signature(generator).parameters if p not in ("G", "rng")]
    for k in params:
        if k not in accepted:
            raise UserError(f"unknown parameter {key}.{k} for {name}{suggestion(k, accepted)}")
    params = coerce_params(generator, name, params, key)
    try:
        pos, vel, mass = generator(G=gravity.G, rng=rng, **params)
    except UserError as exc:
        raise UserError(f"{key} ({name}): {exc}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise UserError(f"bad {key} for {name}: {exc}") from None
    if not all(torch.isfinite(t).all() for t in (pos, vel, mass)):
        raise UserError(f"initial conditions from {name} contain NaN or infinite values")
    systems = gravity.initialise(*(t.to(device=device, dtype=dtype) for t in (pos, vel, mass)))
    where = f"{key} ({name}): " + (f"{params['path']}: " if isinstance(params.get("path"), str) else "")
    if not torch.isfinite(systems.acc).all():
        raise UserError(f"{where}two bodies start at the same place (infinite force); "
                        "move them apart or set physics.softening > 0")
    energy = gravity.energy(systems)
    if not (torch.isfinite(energy) & (energy != 0)).all():
        raise UserError(f"{where}the total energy is exactly 0 or not finite, so the relative "
                        "energy error |dE/E| that gates each step is undefined")
    return systems
