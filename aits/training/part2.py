"""Part 2, generalize: random minibatches of the replay buffers, each evaluated in one batched step
per population with every sample's own history window, until a whole minibatch is done."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from aits.training.part1 import median
from aits.training.population import split
from aits.training.step import Stepper, StepResult

if TYPE_CHECKING:
    from aits.training.executors import Batch
    from aits.training.trainer import Trainer


class Minibatch:
    """Part 2's rule: the update is the mean loss over the minibatch's counted samples (every
    population's share), unless every one of them is done."""

    def __init__(self, stepper: Stepper) -> None:
        self.stepper = stepper

    def weights(self, r: StepResult, rows: torch.Tensor) -> torch.Tensor:
        return rows.to(r.losses.dtype)

    def counts(self, r: StepResult, rows: torch.Tensor) -> list[torch.Tensor]:
        done, gate = self.stepper.done(r)
        return [(done & rows).sum(), (gate & rows).sum()]

    def takes_update(self, totals: torch.Tensor) -> torch.Tensor:
        return totals[1] < totals[0]  # not all done

    def report(self, r: StepResult) -> tuple[torch.Tensor, ...]:
        return self.stepper.done(r)[0], r.log_ratio.detach()


def generalize(t: Trainer) -> dict:
    """Part 2: each iteration draws ``replay_batch_size`` samples, shared among the populations in
    proportion to their numbers of systems (without replacement within each buffer), and takes one
    optimizer step on the mean loss over all of them, until a whole minibatch is done or
    ``max_generalize_iters``. With several processes every one draws the same slots from the run's
    generator and evaluates those it holds."""
    cfg = t.config.training
    pops = t.populations
    stats = {"iterations": 0, "converged": False, "pass_rate": math.nan, "gate_pass_rate": math.nan,
             "dt_over_tau_median": math.nan, "samples": sum(p.buffer.size for p in pops)}
    shares = split(cfg.replay_batch_size, [p.total for p in pops])
    drawn = [(p, share) for p, share in zip(pops, shares) if p.buffer.size and share]
    if not drawn:
        return stats
    distinct = [min(share, p.buffer.size) for p, share in drawn]  # with fixed shapes, padded rows follow
    compiled = t.executors.compiles([(share, p.bodies) for p, share in drawn])
    final: list[tuple[tuple, Batch]] = []  # the last iteration's reports and batches (read once, after the loop)
    for iteration in range(1, cfg.max_generalize_iters + 1):
        t.stop_point()
        batches = [p.replay(p.buffer.indices(share, t.rng, pad=compiled), n) for (p, share), n in zip(drawn, distinct)]
        it = t.executors.run(t.generalize_rule, batches)
        n, n_done, n_gate = it.totals
        stats.update(iterations=iteration, pass_rate=n_done / n, gate_pass_rate=n_gate / n)
        t.reporter.part2_progress(iteration, stats["pass_rate"])
        final = list(zip(it.reports, batches))
        if n_done == n:
            stats["converged"] = True
            break
    done = [t.strategy.gather_rows(report[0][b.rows]) for report, b in final]
    ratios = [t.strategy.gather_rows(report[1][b.rows]) for report, b in final]
    stats["dt_over_tau_median"] = math.exp(median(torch.cat([torch.empty(0, dtype=t.dtype, device=t.device), *ratios])))
    if len(pops) > 1:
        last = {p.name: (d, q) for (p, _), d, q in zip(drawn, done, ratios)}
        stats["populations"] = {p.name: {
            "pass_rate": float(last[p.name][0].double().mean()) if p.name in last else math.nan,
            "dt_over_tau_median": math.exp(median(last[p.name][1])) if p.name in last else math.nan,
            "samples": p.buffer.size} for p in pops}
    return stats
