"""The two-phase training run: Part 1 (:mod:`aits.training.part1`) collects accepted steps behind an
energy gate, Part 2 (:mod:`aits.training.part2`) generalises over them, epoch after epoch. Knows
nothing of the terminal; progress goes to a :class:`Reporter`. Built by
:func:`aits.training.build.build_trainer`; saved and restored by :mod:`aits.training.state`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import torch

from aits.config import RunConfig
from aits.interfaces import FeatureAdapter, Integrator
from aits.model import Policy
from aits.physics import Gravity
from aits.training import part1, part2
from aits.training.executors import Counters, Executors
from aits.training.optim import ClippedAdam
from aits.training.population import Population
from aits.training.step import Stepper
from aits.training.strategy import SingleProcess, Strategy


class Reporter(Protocol):
    def epoch_started(self, epoch: int, total: int) -> None: ...
    def part1_progress(self, accepted: int, target: int, retrain_iters: int) -> None: ...
    def part2_progress(self, iteration: int, pass_rate: float) -> None: ...
    def epoch_finished(self, metrics: dict) -> None: ...


class SilentReporter:
    def epoch_started(self, epoch: int, total: int) -> None: ...
    def part1_progress(self, accepted: int, target: int, retrain_iters: int) -> None: ...
    def part2_progress(self, iteration: int, pass_rate: float) -> None: ...
    def epoch_finished(self, metrics: dict) -> None: ...


class StopRequested(Exception):
    """A stop is due within the epoch (see :func:`aits.training.run.run_epochs`)."""


def never() -> bool:
    return False


class Trainer:
    """Everything a run holds: the step (policy, integrator, loss), the optimizer, the populations of
    training systems with their replay buffers, the RNG, counters and metrics."""

    def __init__(self, config: RunConfig, stepper: Stepper, optimizer: ClippedAdam, populations: list[Population],
                 rng: torch.Generator, strategy: Strategy | None = None, reporter: Reporter | None = None) -> None:
        self.config, self.stepper, self.optimizer, self.populations, self.rng = config, stepper, optimizer, populations, rng
        self.strategy = strategy or SingleProcess()
        self.reporter = reporter or SilentReporter()
        self.counters = Counters()
        self.executors = Executors(stepper, optimizer, self.strategy, self.counters,
                                   config.compile and self.strategy.world_size == 1)
        self.collect_rule = part1.RejectedSystems(stepper)
        self.generalize_rule = part2.Minibatch(stepper)
        self.epoch = 0
        self.metrics: list[dict] = []
        self.should_stop: Callable[[], bool] = never  # asked between iterations of Part 1 and Part 2

    def stop_point(self) -> None:
        """Between two iterations: raise :class:`StopRequested` when a stop is due (in every process)."""
        if self.strategy.reduce_boolean_decision(self.should_stop(), all=False):
            raise StopRequested

    @property
    def policy(self) -> Policy:
        return self.stepper.policy

    @property
    def adapter(self) -> FeatureAdapter:
        return self.stepper.policy.adapter

    @property
    def gravity(self) -> Gravity:
        return self.stepper.gravity

    @property
    def integrator(self) -> Integrator:
        return self.stepper.integrator

    @property
    def device(self) -> torch.device:
        return self.optimizer.flat.device

    @property
    def dtype(self) -> torch.dtype:
        return self.optimizer.flat.dtype

    @property
    def population(self) -> Population:
        """The only population (of a config with ``system:``, or a one-entry ``populations:``)."""
        if len(self.populations) != 1:
            raise ValueError(f"this run trains {len(self.populations)} populations; pick one of trainer.populations")
        return self.populations[0]

    def collect(self) -> dict:
        return part1.collect(self)

    def generalize(self) -> dict:
        return part2.generalize(self)

    def run_epoch(self, part1: bool = True, part2: bool = True) -> dict:
        self.reporter.epoch_started(self.epoch + 1, self.config.training.epochs)
        start = time.perf_counter()
        metrics: dict = {"epoch": self.epoch + 1}
        if part1:
            metrics["part1"] = self.collect()
        if part2:
            metrics["part2"] = self.generalize()
        self.settle_counters()
        metrics.update(buffer_size=sum(p.buffer.size for p in self.populations),
                       force_evaluations=self.counters.force_evaluations,
                       optimizer_steps=self.counters.optimizer_steps, wall_time_s=time.perf_counter() - start)
        self.epoch += 1
        self.metrics.append(metrics)
        self.reporter.epoch_finished(metrics)
        return metrics

    def settle_counters(self) -> None:
        """Move every process's step counts to the first process (the others restart from 0), so
        that the first process's counters are the run's."""
        c = self.counters
        total = self.strategy.all_reduce(torch.tensor([c.force_evaluations, c.nonfinite_steps], device=self.device))
        c.force_evaluations, c.nonfinite_steps = total.tolist() if self.strategy.is_global_zero else (0, 0)
