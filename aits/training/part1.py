"""Part 1, collect: every live system takes accepted steps behind an energy gate; each rejection is
followed by one optimizer step and a retry from the same state."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from aits.errors import RunFailed
from aits.training.executors import Iteration
from aits.training.step import Stepper, StepResult

if TYPE_CHECKING:
    from aits.training.trainer import Trainer


HOPELESS_PROBE_EVERY = 100  # consecutive rejections of one system after which its smallest allowed step is tried


class RetrainCapHit(RunFailed):
    """Part 1 retrained ``max_retrain_steps`` times on one state without an accepted step."""


class HopelessGate(RunFailed):
    """A state that no policy can take through the gate: even the smallest allowed step is rejected."""


class RejectedSystems:
    """Part 1's rule: the update is the mean loss of the counted (still active) systems that the
    gate rejects, over every population; no update when the gate rejects none. Counts the
    accepted steps."""

    def __init__(self, stepper: Stepper) -> None:
        self.stepper = stepper

    def weights(self, r: StepResult, rows: torch.Tensor) -> torch.Tensor:
        return (rows & ~self.stepper.passes_gate(r)).to(r.losses.dtype)

    def counts(self, r: StepResult, rows: torch.Tensor) -> list[torch.Tensor]:
        return [(rows & self.stepper.passes_gate(r)).sum()]

    def takes_update(self, totals: torch.Tensor) -> torch.Tensor:
        return totals[0] > 0

    def report(self, r: StepResult) -> tuple[torch.Tensor, ...]:
        return r.tensors()


def median(x: torch.Tensor) -> float:
    return float(x.median()) if x.numel() else math.nan


def iteration(t: Trainer, active: list[torch.Tensor]) -> tuple[list[StepResult], Iteration]:
    """One Part 1 iteration: every system of every population steps (``active`` (B,) per population
    marks those still collecting), and the rule's update."""
    it = t.executors.run(t.collect_rule, [p.live(a) for p, a in zip(t.populations, active)])
    return [StepResult.of(report) for report in it.reports], it


def collect(t: Trainer) -> dict:
    """Part 1: every system takes ``steps_per_epoch`` accepted steps. All systems move together (the
    finished ones are masked out); each is accepted or retried on its own. With several processes
    each steps its own systems; counts and the decisions that end the loop cover all of them."""
    cfg = t.config.training
    pops = t.populations
    target = cfg.steps_per_epoch * sum(p.total for p in pops)
    remaining = [torch.full((p.batch,), cfg.steps_per_epoch, device=t.device) for p in pops]
    retries = [torch.zeros(p.batch, dtype=torch.int64, device=t.device) for p in pops]
    accepted_err: list[list[torch.Tensor]] = [[] for _ in pops]
    accepted_ratio: list[list[torch.Tensor]] = [[] for _ in pops]
    rejected = [0 for _ in pops]
    retrain = recorded = accepted = 0
    while accepted < target:  # every process's accepted steps are counted in the rule's totals
        active = [left > 0 for left in remaining]
        t.stop_point()
        results, it = iteration(t, active)
        accepted += int(it.totals[1])
        for i, (p, a, r) in enumerate(zip(pops, active, results)):
            ok = a & t.stepper.passes_gate(r)
            failed = a & ~ok
            any_ok = bool(ok.any())
            if any_ok:
                t.policy.observe(p.systems.index(ok), p.history[ok])  # the feature range a bounded policy clamps to
            recorded += p.accept(ok, r, t.adapter)
            if any_ok:
                accepted_err[i].append(r.rel_dE[ok].detach())
                accepted_ratio[i].append(r.log_ratio[ok].detach())
                remaining[i] -= ok.long()
                retries[i].masked_fill_(ok, 0)
            n_failed = int(failed.sum())
            if n_failed:
                rejected[i] += n_failed
                retries[i] += failed.long()
        share_feature_range(t)
        if it.totals[0] == 0:  # no system of any process was rejected
            continue
        retrain += 1
        t.reporter.part1_progress(accepted, target, retrain)
        refuse_hopeless(t, retries)
        capped = bool(cfg.max_retrain_steps) and max(int(n.max()) for n in retries) >= cfg.max_retrain_steps
        if t.strategy.reduce_boolean_decision(capped, all=False):
            raise RetrainCapHit(
                f"Part 1 retrained {cfg.max_retrain_steps} times on one state without an accepted step "
                f"(training.max_retrain_steps); the policy cannot reach energy_threshold={cfg.energy_threshold:g}"
            )
    pairs = [(gather(t, e), gather(t, q)) for e, q in zip(accepted_err, accepted_ratio)]
    counts = t.strategy.all_reduce(torch.tensor(rejected, dtype=torch.int64, device=t.device)).tolist()
    gathered = [(e, q, n) for (e, q), n in zip(pairs, counts)]
    overall = summary([e for e, _, _ in gathered], [q for _, q, _ in gathered], counts)
    stats = {"accepted": overall.pop("accepted"), "rejected": overall.pop("rejected"), "retrain_iters": retrain,
             "recorded": recorded, **overall}
    if len(pops) > 1:
        stats["populations"] = {p.name: summary([e], [q], [n]) for p, (e, q, n) in zip(pops, gathered)}
    return stats


def share_feature_range(t: Trainer) -> None:
    """Widen a bounded policy's feature range to what every process has seen (a no-op for a free
    policy or in one process)."""
    policy = t.policy
    if policy.clamps and t.strategy.world_size > 1:
        bounds = t.strategy.all_gather(torch.stack([policy.feature_lo, policy.feature_hi]))
        policy.feature_lo.copy_(bounds[:, 0].amin(0))
        policy.feature_hi.copy_(bounds[:, 1].amax(0))


def refuse_hopeless(t: Trainer, retries: list[torch.Tensor]) -> None:
    """Raise :class:`HopelessGate` when a system rejected :data:`HOPELESS_PROBE_EVERY` times in a
    row (or a multiple) is rejected even at the smallest step the policy can predict,
    ``model.min_dt_fraction`` times its time scale: no retraining can help then. The probe step
    changes nothing and is not counted."""
    cfg, floor = t.config, t.config.model.min_dt_fraction
    stuck = None
    for p, n in zip(t.populations, retries):
        probe = (n > 0) & (n % HOPELESS_PROBE_EVERY == 0)
        if stuck is None and bool(probe.any()):
            s, energy, history = p.systems.index(probe), p.energy[probe], p.history[probe]
            with torch.no_grad():
                dt = floor * t.adapter.features_and_timescale(s, history)[1]
                r = t.stepper.step(s, energy, dt, torch.full_like(dt, math.log(floor)))
            rejected = ~t.stepper.passes_gate(r)
            if bool(rejected.any()):
                row = p.strategy.shard(p.total).start + int(probe.nonzero()[rejected.nonzero()[0, 0], 0])
                where = f"system {row}" + (f" of population {p.name}" if len(t.populations) > 1 else "")
                stuck = (f"Part 1 cannot pass the energy gate: {where} is rejected even at the smallest step the "
                         f"policy can take (model.min_dt_fraction={floor:g} of its time scale gives |dE/E| = "
                         f"{float(r.rel_dE[rejected][0]):.3g}, not below training.energy_threshold="
                         f"{cfg.training.energy_threshold:g}), so no retraining can help; raise "
                         "training.energy_threshold or lower model.min_dt_fraction")
    if t.strategy.reduce_boolean_decision(stuck is not None, all=False):
        raise HopelessGate(stuck or "Part 1 cannot pass the energy gate in another process")


def gather(t: Trainer, parts: list[torch.Tensor]) -> torch.Tensor:
    """One population's values of this process's ``parts``, then of every other process."""
    return t.strategy.gather_rows(torch.cat([torch.empty(0, dtype=t.dtype, device=t.device), *parts]))


def summary(errors: list[torch.Tensor], ratios: list[torch.Tensor], rejected: list[int]) -> dict:
    """Accepted and rejected steps, their energy errors and dt / tau, over the given populations."""
    err, ratio = torch.cat(errors), torch.cat(ratios)
    return {"accepted": int(err.numel()), "rejected": sum(rejected),
            "rel_dE_median": median(err), "rel_dE_max": float(err.max()) if err.numel() else math.nan,
            "dt_over_tau_median": math.exp(median(ratio)) if ratio.numel() else math.nan}
