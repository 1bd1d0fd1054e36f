"""Trainers and systems for a cell: the embedded default config with the cell's overrides."""

from __future__ import annotations

import dataclasses
import json
from argparse import Namespace

import torch

from aits import registry
from aits.builtin.integrators import Leapfrog
from aits.config import RunConfig, default_config_path, load_config, read_yaml
from aits.interfaces import Integrator
from aits.physics import Systems
from aits.systems import make_systems
from aits.training.build import build_trainer
from aits.training.trainer import Trainer

NEVER = {"energy_threshold": 1e-290, "E_lower": 1e-300}  # a gate (and a band) no step passes
ALWAYS = {"energy_threshold": 1e300}  # a gate every finite step passes


class AutogradLeapfrog(Leapfrog):
    """The leapfrog step differentiated by autograd through the pair tensors (the interface's
    default ``step_with_energy``): the gradient path before the closed form, as a reference."""

    step_with_energy = Integrator.step_with_energy
    cuts_nonfinite_rows = False


def system_spec(n: int) -> tuple[str, dict]:
    """For N = 2 the embedded default training set (eccentric binaries), with its count dropped;
    for N >= 3 bound random clusters of N equal masses."""
    if n == 2:
        system = read_yaml(default_config_path()).get("system", {})
        params = {k: v for k, v in system.get("params", {}).items() if k != "count"}
        return system.get("generator", "binary_batch"), params
    return "cluster", {"n": n, "dims": 3}


def workload(n: int, count: int, **training: object) -> list[str]:
    """Overrides of the embedded default for ``count`` systems of :func:`system_spec` and the closest
    pair's features (``analytic``), the workload the figures of issue 16 were measured on, with
    these ``training`` settings."""
    generator, params = system_spec(n)
    return ["features.adapter=analytic", f"system.generator={generator}",
            f"system.params={json.dumps({**params, 'count': count})}",
            *(f"training.{key}={json.dumps(value)}" for key, value in training.items())]


def build_config(args: Namespace, hidden: list[int], n: int, count: int, **training: object) -> RunConfig:
    """The embedded default config with this cell's :func:`workload` and settings (and the user's
    --set) as overrides."""
    overrides = [f"device={args.device}", f"dtype={args.dtype}", f"seed={args.seed}",
                 f"model.hidden={json.dumps(list(hidden))}", *workload(n, count, **training)]
    if args.threads is not None:
        overrides.append(f"threads={args.threads}")  # the trainer sets torch's thread count from it
    return load_config(None, overrides + list(args.set))


def make_batch(trainer: Trainer, n: int, count: int) -> Systems:
    generator, params = system_spec(n)
    gen = registry.get_registry().get("initial_conditions", generator)
    return make_systems(gen, {**params, "count": count}, trainer.gravity, trainer.rng, trainer.dtype, trainer.device)


def filled_trainer(config: RunConfig, n: int, capacity: int, integrator: Integrator | None = None) -> Trainer:
    """A trainer whose replay buffer holds ``capacity`` fresh systems (and, given, this integrator)."""
    tr = build_trainer(config)
    if integrator is not None:
        tr.stepper.integrator = integrator
    s = make_batch(tr, n, capacity)
    tr.population.buffer.add(s, tr.gravity.energy(s), tr.adapter.empty_history(s), torch.zeros_like(s.time))
    return tr


def with_training(config: RunConfig, **changes: object) -> RunConfig:
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **changes))
