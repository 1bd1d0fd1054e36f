"""Building a run from its config: the only place that reads the plugin registry, seeds the random
generators and sets torch's threads. Running is :class:`~aits.training.trainer.Trainer`'s job."""

from __future__ import annotations

import torch

from aits import registry, resources
from aits.config import RunConfig
from aits.interfaces import FeatureAdapter
from aits.model import Policy
from aits.physics import Gravity
from aits.runtime import resolve_device, resolve_dtype, seed_everything
from aits.systems import make_systems
from aits.training.optim import ClippedAdam
from aits.training.population import Population, split
from aits.training.step import Stepper
from aits.training.strategy import SingleProcess, Strategy
from aits.training.trainer import Reporter, Trainer


def build_adapter(config: RunConfig, gravity: Gravity) -> FeatureAdapter:
    """The feature adapter of ``config``, from the registry."""
    return registry.get_registry().get("features", config.features.adapter)(gravity, history_len=config.features.history_len)


def build_policy(config: RunConfig, gravity: Gravity, adapter: FeatureAdapter | None = None) -> Policy:
    """The untrained policy network of ``config`` (on ``adapter``, default :func:`build_adapter`),
    float64 on the CPU."""
    return Policy(adapter or build_adapter(config, gravity), config.model, len(config.population_configs()))


def build_trainer(config: RunConfig, reporter: Reporter | None = None, strategy: Strategy | None = None) -> Trainer:
    """A fresh run of ``config``: seeded, every plugin looked up (an unknown name fails here, before
    any file is written), the policy, optimizer and each population's systems built; the replay
    capacity is shared among the populations in proportion to their numbers of systems. With several
    processes (``strategy``) every one builds the same run and keeps its share of each population."""
    strategy = strategy or SingleProcess()
    device, dtype = strategy.place(resolve_device(config.device)), resolve_dtype(config.dtype)
    resources.check_threads(config.threads)
    if device.type == "cpu" and config.threads > 0:
        torch.set_num_threads(config.threads)
    rng = seed_everything(config.seed)
    plugins = registry.get_registry()
    gravity = Gravity(config.physics.G, config.physics.softening)
    integrator = plugins.get("integrator", config.integrator)
    loss_fn = plugins.get("loss", config.training.loss)
    kinds = config.population_configs()
    generators = [plugins.get("initial_conditions", kind.generator) for kind in kinds]
    adapter = build_adapter(config, gravity)
    resources.check_memory(config, adapter, generators, device, dtype)  # before anything large is allocated
    policy = build_policy(config, gravity, adapter).to(device, dtype)
    optimizer = ClippedAdam(policy.parameters(), config.training.learning_rate, config.training.grad_clip)
    systems = [make_systems(generator, kind.params, gravity, rng, dtype, device, config.params_key(i))
               for i, (kind, generator) in enumerate(zip(kinds, generators))]
    capacities = split(config.training.replay_capacity, [s.batch for s in systems])
    populations = [Population(kind.label, s, gravity, policy.adapter, capacity, strategy, i)
                   for i, (kind, s, capacity) in enumerate(zip(kinds, systems, capacities))]
    stepper = Stepper(policy, integrator, gravity, loss_fn, config.training)
    return Trainer(config, stepper, optimizer, populations, rng, strategy, reporter)
