"""How a training iteration becomes a gradient and an update.

A Part states once, as a :class:`Rule`, which rows train and with what weight; every executor turns
that into the same update: the gradient of ``sum(w * loss) / sum(w)`` over every row of every batch
(and every process), applied unless the rule declines it or the gradient is not finite.

* :class:`Eager` evaluates each batch whole and backpropagates the weighted mean once.
* :class:`Chunked` evaluates batches chunk by chunk (``training.max_chunk_pairs``), each chunk's
  ``sum(w * loss)`` backpropagated before the next, and divides the summed gradient at the end.
* :class:`Compiled` runs the whole iteration (steps, losses, gradient by ``torch.func``, the
  optimizer's update) as one ``torch.compile`` graph for fixed shapes.

Every sum over rows that must cover all processes goes through the run's
:class:`~aits.training.strategy.Strategy`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import Protocol

import torch

from aits.physics import Systems
from aits.runtime import warn_compile_failed
from aits.training.optim import ClippedAdam
from aits.training.step import Stepper, StepResult
from aits.training.strategy import Strategy

Cached = tuple[torch.Tensor, torch.Tensor] | None  # features and time scales computed beforehand, if any
Load = Callable[..., tuple[Systems, torch.Tensor, torch.Tensor, Cached]]


class Rule(Protocol):
    """What one Part trains on in an iteration. Every method is plain tensor code (it runs inside a
    compiled graph too)."""

    def weights(self, r: StepResult, rows: torch.Tensor) -> torch.Tensor:
        """Per row, its weight (>= 0) in the mean loss; zero outside ``rows``, the rows that count."""

    def counts(self, r: StepResult, rows: torch.Tensor) -> list[torch.Tensor]:
        """Tallies (0-d) that are summed over chunks, batches and processes into the totals."""

    def takes_update(self, totals: torch.Tensor) -> torch.Tensor:
        """Whether to update (0-d bool) from the totals ``[sum of weights, *counts]``."""

    def report(self, r: StepResult) -> tuple[torch.Tensor, ...]:
        """The per-row tensors the Part reads back."""


def live_states(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, acc: torch.Tensor, time: torch.Tensor,
                energy: torch.Tensor, history: torch.Tensor) -> tuple[Systems, torch.Tensor, torch.Tensor, Cached]:
    """The :data:`Load` of a batch whose inputs are the states themselves (features computed as they step)."""
    return Systems(pos, vel, mass, acc, time), energy, history, None


@dataclass(frozen=True)
class Batch:
    """One population's rows of an iteration: ``load(*inputs)`` gives (states, energies, history
    windows, and their features and time scales when these were computed beforehand); ``rows`` (B,)
    marks the rows that count (the others are evaluated only to keep shapes); ``population``: the
    index of the population they belong to."""

    load: Load
    inputs: tuple[torch.Tensor, ...]
    rows: torch.Tensor
    bodies: int
    population: int = 0

    def chunk(self, rows: slice) -> Batch:
        return Batch(self.load, tuple(t[rows] for t in self.inputs), self.rows[rows], self.bodies, self.population)


@dataclass
class Iteration:
    reports: list[tuple[torch.Tensor, ...]]  # per batch, the rule's report
    totals: list[float]  # [sum of weights, *counts] over every batch (and process)
    applied: bool  # whether the optimizer updated


@dataclass
class Counters:
    force_evaluations: int = 0
    optimizer_steps: int = 0
    nonfinite_steps: int = 0


class Executor:
    """The parts every executor shares: counting steps, and one optimizer step on a gradient."""

    def __init__(self, stepper: Stepper, optimizer: ClippedAdam, strategy: Strategy, counters: Counters) -> None:
        self.stepper, self.optimizer, self.strategy, self.counters = stepper, optimizer, strategy, counters

    def run(self, rule: Rule, batches: list[Batch]) -> Iteration | None:
        """One iteration; None when this executor cannot run it (a failed compilation)."""
        raise NotImplementedError

    def optimise(self, loss: torch.Tensor) -> bool:
        """Backpropagate ``loss`` and take one optimizer step (skipped when the gradient is not finite)."""
        self.optimizer.zero_grad()
        loss.backward()
        return self.step()

    def step(self) -> bool:
        """The optimizer step on the gradient summed over processes."""
        self.strategy.all_reduce(self.optimizer.grad)
        if not self.optimizer.step():
            return False
        self.counters.optimizer_steps += 1
        return True

    def count(self, rows: int, nonfinite_rows: int, retaken: bool) -> None:
        """Count one batched step of ``rows`` counted systems (retaken when a row was not finite)."""
        self.counters.nonfinite_steps += nonfinite_rows
        self.counters.force_evaluations += self.stepper.integrator.force_evaluations * rows * (2 if retaken else 1)

    def evaluate(self, rule: Rule, b: Batch) -> tuple[StepResult, torch.Tensor, torch.Tensor]:
        """Evaluate a batch eagerly and count it: (outcome, weights, ``[sum of weights, *counts]``)."""
        s, energy, history, cached = b.load(*b.inputs)
        r = self.stepper.evaluate(s, energy, history, b.population, cached)
        self.count(int(b.rows.sum()), 0 if r.all_finite else int((~r.finite & b.rows).sum()), not r.all_finite)
        w = rule.weights(r, b.rows)
        return r, w, tally(rule, r, w, b.rows)

    def reduce(self, tallies: list[torch.Tensor]) -> torch.Tensor:
        return self.strategy.all_reduce(reduce(operator.add, tallies))


class Eager(Executor):
    """Every batch whole, one backward pass of the weighted mean loss."""

    def run(self, rule: Rule, batches: list[Batch]) -> Iteration:
        evaluated = [self.evaluate(rule, b) for b in batches]
        totals = self.reduce([tally for _, _, tally in evaluated])
        applied = False
        if bool(rule.takes_update(totals)):
            applied = self.optimise(reduce(operator.add, [(w / totals[0] * r.losses).sum() for r, w, _ in evaluated]))
        return Iteration([rule.report(r) for r, _, _ in evaluated], totals.tolist(), applied)


class Chunked(Executor):
    """Batches cut into chunks of at most ``max_chunk_pairs`` body pairs (systems x N^2): each
    chunk's ``sum(w * loss)`` is backpropagated before the next is evaluated, and the summed gradient
    divided by the sum of the weights. Peak memory does not grow with the batch."""

    def run(self, rule: Rule, batches: list[Batch]) -> Iteration:
        self.optimizer.zero_grad()
        reports, tallies = [], []
        for b in batches:
            parts = []
            for rows in chunks(b.rows.numel(), b.bodies, self.stepper.training.max_chunk_pairs):
                r, w, tally = self.evaluate(rule, b.chunk(rows))
                if bool(tally[0] > 0):
                    (w * r.losses).sum().backward()
                tallies.append(tally)
                parts.append([t.detach() for t in rule.report(r)])
            reports.append(tuple(torch.cat(ts) for ts in zip(*parts)))
        totals = self.reduce(tallies)
        applied = False
        if bool(rule.takes_update(totals)):
            self.optimizer.grad.div_(totals[0])
            applied = self.step()
        return Iteration(reports, totals.tolist(), applied)


def tally(rule: Rule, r: StepResult, w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """A batch's ``[sum of weights, *counts]``, in the weights' dtype."""
    return torch.stack([w.sum(), *(c.to(w.dtype) for c in rule.counts(r, rows))])


def chunks(rows: int, bodies: int, max_pairs: int) -> list[slice]:
    """``rows`` systems of ``bodies`` bodies cut into chunks of at most ``max_pairs`` body pairs."""
    size = max(1, max_pairs // bodies**2)
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


class Compiled(Executor):
    """The whole iteration as one ``torch.compile`` graph per rule and batch layout (fixed shapes):
    every batch's step and losses, the gradient of the weighted mean by ``torch.func``, and
    :meth:`ClippedAdam.update_where`, applied where the eager executor would step. One host read.
    Inductor's C++ wrapper: the graph's kernel and library calls from C++, not Python (1.10x the
    samples/s at N = 2, M = 512 on a CPU; a few seconds more to compile).

    If compiling fails (e.g. no C++ compiler): a one-line warning, and :meth:`run` returns None from
    then on, so that the caller runs the iteration eagerly."""

    def __init__(self, stepper: Stepper, optimizer: ClippedAdam, strategy: Strategy, counters: Counters) -> None:
        super().__init__(stepper, optimizer, strategy, counters)
        self.failed = False
        self.graphs: dict[tuple, Callable[..., tuple]] = {}
        self.parameter_names = [name for name, _ in stepper.policy.named_parameters()]

    def run(self, rule: Rule, batches: list[Batch]) -> Iteration | None:
        if self.failed:
            return None
        layout = tuple(len(b.inputs) for b in batches)
        try:
            loads = [(b.load, b.population) for b in batches]
            key = (rule, tuple(loads), layout)
            if key not in self.graphs:
                self.graphs[key] = torch.compile(self._iteration(rule, loads, layout), dynamic=False,
                                                 options={"cpp_wrapper": True})
            self.stepper.deploy()
            inputs = [t for b in batches for t in (*b.inputs, b.rows)]
            reports, summary = self.graphs[key](*self.optimizer.tensors(), self.optimizer.next_step(), *inputs)
        except Exception as exc:
            self.failed = True
            warn_compile_failed(exc, "training")
            return None
        values = summary.tolist()  # [*totals, then per batch (rows, non-finite rows, retaken), applied]
        k = len(values) - 1 - 3 * len(batches)
        for i in range(len(batches)):
            rows, nonfinite, retaken = values[k + 3 * i : k + 3 * i + 3]
            self.count(int(rows), int(nonfinite), bool(retaken))
        applied = bool(values[-1])
        if applied:
            self.optimizer.record_update()
            self.counters.optimizer_steps += 1
        return Iteration(list(reports), values[:k], applied)

    def _iteration(self, rule: Rule, loads: list[tuple[Load, int]], layout: tuple[int, ...]) -> Callable[..., tuple]:
        """The function of tensors that is compiled: (optimizer tensors, step number, then each batch's
        inputs and rows) -> (each batch's report, one summary tensor); ``loads``: each batch's load and
        population."""
        stepper, optimizer, names = self.stepper, self.optimizer, self.parameter_names

        def iteration(flat: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: torch.Tensor,
                      *inputs: torch.Tensor) -> tuple:
            batches, at = [], 0
            for (load, population), size in zip(loads, layout):
                batches.append((load, population, inputs[at : at + size], inputs[at + size]))
                at += size + 1

            def weighted_loss(params: torch.Tensor) -> tuple[torch.Tensor, tuple]:
                named = dict(zip(names, optimizer.views(params)))
                outcomes = []
                for load, population, batch_inputs, rows in batches:
                    s, energy, history, cached = load(*batch_inputs)
                    r = stepper.outcome(s, energy, *torch.func.functional_call(stepper.policy, named,
                                                                                (s, history, population, cached)))
                    outcomes.append((r, rule.weights(r, rows), rows))
                totals = self.strategy.all_reduce(reduce(operator.add, [tally(rule, r, w, rows) for r, w, rows in outcomes]))
                update = rule.takes_update(totals)
                scale = update / totals[0].clamp_min(1)
                loss = reduce(operator.add, [(w * scale * r.losses).sum() for r, w, _ in outcomes])
                stats = [torch.stack([x.to(totals.dtype) for x in (rows.sum(), (~r.finite & rows).sum(), (~r.finite).any())])
                         for r, _, rows in outcomes]
                reports = tuple(tuple(t.detach() for t in rule.report(r)) for r, _, _ in outcomes)
                return loss, (reports, torch.cat([totals, *stats]), update)

            grad, (reports, summary, update) = torch.func.grad(weighted_loss, has_aux=True)(flat)
            applied = optimizer.update_where((flat, exp_avg, exp_avg_sq), self.strategy.all_reduce(grad), step, update)
            return reports, torch.cat([summary, applied[None].to(summary.dtype)])

        return iteration


class Executors:
    """The executors of a run, and which one takes an iteration: compiled (config key ``compile``)
    when every batch fits one chunk, chunked when some batch does not, eager otherwise."""

    def __init__(self, stepper: Stepper, optimizer: ClippedAdam, strategy: Strategy, counters: Counters,
                 compile: bool) -> None:
        self.eager = Eager(stepper, optimizer, strategy, counters)
        self.chunked = Chunked(stepper, optimizer, strategy, counters)
        self.compiled = Compiled(stepper, optimizer, strategy, counters) if compile else None
        self.stepper = stepper

    def compiles(self, shapes: list[tuple[int, int]]) -> bool:
        """Whether an iteration over batches of (rows, bodies) ``shapes`` runs compiled."""
        return self.compiled is not None and not self.compiled.failed and not self._chunks(shapes)

    def run(self, rule: Rule, batches: list[Batch]) -> Iteration:
        shapes = [(b.rows.numel(), b.bodies) for b in batches]
        if self.compiles(shapes):
            it = self.compiled.run(rule, batches)
            if it is not None:
                return it
        return (self.chunked if self._chunks(shapes) else self.eager).run(rule, batches)

    def _chunks(self, shapes: list[tuple[int, int]]) -> bool:
        """Whether some batch needs more than one chunk."""
        return any(len(chunks(rows, bodies, self.stepper.training.max_chunk_pairs)) > 1 for rows, bodies in shapes)
