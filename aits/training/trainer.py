"""The two-phase training core: Part 1 collects accepted steps behind an energy gate, Part 2
generalises over them. Knows nothing of the terminal; progress goes to a :class:`Reporter`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from aits import registry
from aits.config import RunConfig
from aits.errors import RunFailed
from aits.interfaces import push_history
from aits.model import Policy
from aits.physics import Gravity, Systems
from aits.physics.gravity import relative_energy_error
from aits.runtime import resolve_device, resolve_dtype, restore_rng_state, rng_state, seed_everything
from aits.training.buffer import ReplayBuffer
from aits.training.optim import ClippedAdam


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


class RetrainCapHit(RunFailed):
    """Part 1 retrained ``max_retrain_steps`` times on one state without an accepted step."""


@dataclass
class StepResult:
    """One batched policy step: what the gate judges and what the loss trains on."""

    new: Systems
    energy: torch.Tensor
    rel_dE: torch.Tensor
    dt: torch.Tensor
    log_ratio: torch.Tensor
    finite: torch.Tensor
    all_finite: bool


@dataclass
class Counters:
    force_evaluations: int = 0
    optimizer_steps: int = 0
    nonfinite_steps: int = 0


def median(x: torch.Tensor) -> float:
    return float(x.median()) if x.numel() else math.nan


class Trainer:
    """Holds everything a run needs: policy, optimizer, live systems, history, replay buffer, RNG."""

    def __init__(self, config: RunConfig, reporter: Reporter | None = None) -> None:
        self.config = config
        self.reporter = reporter or SilentReporter()
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype)
        if self.device.type == "cpu" and config.threads > 0:
            torch.set_num_threads(config.threads)
        self.rng = seed_everything(config.seed)
        plugins = registry.get_registry()
        self.gravity = Gravity(config.physics.G, config.physics.softening)
        self.integrator = plugins.get("integrator", config.integrator)
        self.loss_fn = plugins.get("loss", config.training.loss)
        adapter = plugins.get("features", config.features.adapter)(self.gravity, history_len=config.features.history_len)
        self.policy = Policy(adapter, config.model).to(self.device, self.dtype)
        self.optimizer = ClippedAdam(self.policy.parameters(), config.training.learning_rate, config.training.grad_clip)
        self.systems = self._initial_systems(plugins)
        self.energy = self.gravity.energy(self.systems)
        self.history = adapter.empty_history(self.systems)
        self.accepted_steps = torch.zeros(self.systems.batch, dtype=torch.int64, device=self.device)
        self.buffer = ReplayBuffer(config.training.replay_capacity, self.systems.bodies, self.systems.dims,
                                   adapter.history_len, adapter.memory_dim, self.dtype, self.device)
        self.epoch = 0
        self.metrics: list[dict] = []
        self.counters = Counters()

    @property
    def adapter(self):
        return self.policy.adapter

    def _initial_systems(self, plugins: registry.Registry) -> Systems:
        from aits.physics.initial import make_systems

        generator = plugins.get("initial_conditions", self.config.system.generator)
        return make_systems(generator, self.config.system.params, self.gravity, self.rng, self.dtype, self.device)

    # --- one batched step -------------------------------------------------------------------------

    def evaluate(self, s: Systems, energy: torch.Tensor, history: torch.Tensor) -> StepResult:
        """Predict dt, take one step and measure the relative energy error, for every system."""
        if self.policy.training:
            self.policy.eval()  # the gate judges the deployed, deterministic policy
        dt, log_ratio = self.policy(s, history)
        result = self._step(s, energy, dt, log_ratio)
        if not result.all_finite:
            # Cut the graph of the non-finite rows so their NaN/inf cannot reach the gradients.
            self.counters.nonfinite_steps += int((~result.finite).sum())
            result = self._step(s, energy, torch.where(result.finite, dt, dt.detach()), log_ratio)
        return result

    def _step(self, s: Systems, energy: torch.Tensor, dt: torch.Tensor, log_ratio: torch.Tensor) -> StepResult:
        new = self.integrator.step(s, dt, self.gravity)
        self.counters.force_evaluations += self.integrator.force_evaluations * s.batch
        e_new = self.gravity.energy(new)
        rel = relative_energy_error(e_new, energy)
        finite = torch.isfinite(rel) & torch.isfinite(new.pos).all((1, 2)) & torch.isfinite(new.vel).all((1, 2))
        return StepResult(new, e_new, rel, dt, log_ratio, finite, bool(finite.all()))

    def sample_losses(self, r: StepResult) -> torch.Tensor:
        """Per-sample loss; a non-finite step costs a bounded penalty that pushes its dt down."""
        if r.all_finite:
            return self.loss_fn(r.rel_dE, self.config.training)
        safe = torch.where(r.finite, r.rel_dE, torch.ones_like(r.rel_dE))
        push_down = torch.where(torch.isfinite(r.log_ratio), r.log_ratio - r.log_ratio.detach(), 0.0)
        penalty = self.config.training.nonfinite_penalty * (1 + push_down)
        return torch.where(r.finite, self.loss_fn(safe, self.config.training), penalty)

    def optimise(self, loss: torch.Tensor) -> None:
        """One optimizer step; a non-finite gradient is skipped so the weights never become NaN."""
        self.optimizer.zero_grad()
        loss.backward()
        if self.optimizer.step():
            self.counters.optimizer_steps += 1

    # --- Part 1 ----------------------------------------------------------------------------------

    def collect(self) -> dict:
        """Part 1: every system takes ``steps_per_epoch`` accepted steps; each rejection is followed
        by one optimizer step and a retry from the same state."""
        cfg = self.config.training
        target = cfg.steps_per_epoch * self.systems.batch
        remaining = torch.full((self.systems.batch,), cfg.steps_per_epoch, device=self.device)
        retries = torch.zeros(self.systems.batch, dtype=torch.int64, device=self.device)
        accepted_err, accepted_ratio = [], []
        rejected = retrain = recorded = 0
        while True:
            active = remaining.nonzero().squeeze(1)
            if active.numel() == 0:
                break
            s, history = self.systems.index(active), self.history[active]
            r = self.evaluate(s, self.energy[active], history)
            ok = r.finite & (r.rel_dE < cfg.energy_threshold)
            recorded += self._accept(active[ok], s.index(ok), history[ok], r, ok)
            accepted_err.append(r.rel_dE[ok].detach())
            accepted_ratio.append(r.log_ratio[ok].detach())
            remaining[active[ok]] -= 1
            retries[active[ok]] = 0
            if bool(ok.all()):
                continue
            self.optimise(self.sample_losses(r)[~ok].mean())
            rejected += int((~ok).sum())
            retrain += 1
            retries[active[~ok]] += 1
            self.reporter.part1_progress(target - int(remaining.sum()), target, retrain)
            if cfg.max_retrain_steps and int(retries.max()) >= cfg.max_retrain_steps:
                raise RetrainCapHit(
                    f"Part 1 retrained {cfg.max_retrain_steps} times on one state without an accepted step "
                    f"(training.max_retrain_steps); the policy cannot reach energy_threshold={cfg.energy_threshold:g}"
                )
        errors, ratios = torch.cat(accepted_err), torch.cat(accepted_ratio)
        return {
            "accepted": int(errors.numel()), "rejected": rejected, "retrain_iters": retrain, "recorded": recorded,
            "rel_dE_median": median(errors), "rel_dE_max": float(errors.max()) if errors.numel() else math.nan,
            "dt_over_tau_median": math.exp(median(ratios)) if ratios.numel() else math.nan,
        }

    def _accept(self, idx: torch.Tensor, s: Systems, history: torch.Tensor, r: StepResult, ok: torch.Tensor) -> int:
        """Advance the accepted systems; record their pre-step samples unless still warming up."""
        dt = r.dt[ok].detach()
        keep = self.accepted_steps[idx] >= self.adapter.history_len  # the first history_len steps are warm-up
        self.buffer.add(s.index(keep), self.energy[idx][keep], history[keep], dt[keep])
        self.history[idx] = push_history(history, self.adapter.memory(s, dt))
        self.systems = _scatter(self.systems, idx, r.new.index(ok).detach())
        self.energy[idx] = r.energy[ok].detach()
        self.accepted_steps[idx] += 1
        return int(keep.sum())

    # --- Part 2 ----------------------------------------------------------------------------------

    def generalize(self) -> dict:
        """Part 2: minibatches of the replay buffer, each evaluated in one batched step with every
        sample's own history window, until a whole minibatch is done or the iteration cap."""
        cfg = self.config.training
        stats = {"iterations": 0, "converged": False, "pass_rate": math.nan, "gate_pass_rate": math.nan,
                 "dt_over_tau_median": math.nan, "samples": self.buffer.size}
        if self.buffer.size == 0:
            return stats
        for iteration in range(1, cfg.max_generalize_iters + 1):
            s, energy, history = self.buffer.sample(cfg.replay_batch_size, self.rng)
            r = self.evaluate(s, energy, history)
            gate = r.finite & (r.rel_dE < cfg.energy_threshold)
            done = gate & (r.rel_dE >= cfg.E_lower) if cfg.done_criterion == "band" else gate
            stats.update(iterations=iteration, pass_rate=float(done.double().mean()),
                         gate_pass_rate=float(gate.double().mean()),
                         dt_over_tau_median=math.exp(median(r.log_ratio.detach())))
            self.reporter.part2_progress(iteration, stats["pass_rate"])
            if bool(done.all()):
                stats["converged"] = True
                break
            self.optimise(self.sample_losses(r).mean())
        return stats

    # --- epochs ----------------------------------------------------------------------------------

    def run_epoch(self, part1: bool = True, part2: bool = True) -> dict:
        self.reporter.epoch_started(self.epoch + 1, self.config.training.epochs)
        start = time.perf_counter()
        metrics: dict = {"epoch": self.epoch + 1}
        if part1:
            metrics["part1"] = self.collect()
        if part2:
            metrics["part2"] = self.generalize()
        metrics.update(buffer_size=self.buffer.size, force_evaluations=self.counters.force_evaluations,
                       optimizer_steps=self.counters.optimizer_steps, wall_time_s=time.perf_counter() - start)
        self.epoch += 1
        self.metrics.append(metrics)
        self.reporter.epoch_finished(metrics)
        return metrics

    # --- checkpoints -----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        s = self.systems
        return {
            "epoch": self.epoch,
            "metrics": self.metrics,
            "model": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.rng),
            "buffer": self.buffer.state_dict(),
            "systems": {"pos": s.pos.cpu(), "vel": s.vel.cpu(), "mass": s.mass.cpu(), "acc": s.acc.cpu(),
                        "time": s.time.cpu(), "energy": self.energy.cpu(), "history": self.history.cpu(),
                        "accepted_steps": self.accepted_steps.cpu()},
            "counters": {"force_evaluations": self.counters.force_evaluations,
                         "optimizer_steps": self.counters.optimizer_steps,
                         "nonfinite_steps": self.counters.nonfinite_steps},
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.metrics = list(state["metrics"])
        self.policy.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"], self.rng)
        self.buffer.load_state_dict(state["buffer"])
        sys = {k: v.to(self.device) for k, v in state["systems"].items()}
        self.systems = Systems(sys["pos"], sys["vel"], sys["mass"], sys["acc"], sys["time"])
        self.energy, self.history, self.accepted_steps = sys["energy"], sys["history"], sys["accepted_steps"]
        self.counters = Counters(**state["counters"])


def _scatter(base: Systems, idx: torch.Tensor, part: Systems) -> Systems:
    """``base`` with the rows ``idx`` replaced by ``part``."""
    out = [t.clone() for t in base.tensors()]
    for full, new in zip(out, part.tensors()):
        full[idx] = new
    return Systems(*out)
