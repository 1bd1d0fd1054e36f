"""The two-phase training core: Part 1 collects accepted steps behind an energy gate, Part 2
generalises over them. Knows nothing of the terminal; progress goes to a :class:`Reporter`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import torch

from aits import registry
from aits.config import RunConfig
from aits.errors import RunFailed
from aits.interfaces import push_history
from aits.model import Policy
from aits.physics import Gravity, Systems
from aits.physics.gravity import relative_energy_error
from aits.runtime import (resolve_device, resolve_dtype, restore_rng_state, rng_state, seed_everything,
                          warn_compile_failed)
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
    losses: torch.Tensor | None = None  # per sample, from Trainer.evaluate

    @cached_property
    def all_finite(self) -> bool:
        return bool(self.finite.all())


@dataclass
class Counters:
    force_evaluations: int = 0
    optimizer_steps: int = 0
    nonfinite_steps: int = 0


def median(x: torch.Tensor) -> float:
    return float(x.median()) if x.numel() else math.nan


class CompiledOrEager:
    """``fn`` compiled by ``torch.compile`` for fixed shapes (one graph per input shape); if compiling
    fails (e.g. no C++ compiler), a one-line warning and ``fn`` run eagerly from then on."""

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]]) -> None:
        self.eager = fn
        self.compiled: Callable[..., tuple[torch.Tensor, ...]] | None = None
        try:
            self.compiled = torch.compile(fn, dynamic=False)
        except Exception as exc:
            self._fall_back(exc)

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as exc:
                self._fall_back(exc)
        return self.eager(*args)

    def _fall_back(self, exc: Exception) -> None:
        self.compiled = None
        warn_compile_failed(exc, "training")


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
        # compile: the per-step loss computation compiled for fixed shapes (Part 2 pads short minibatches)
        self._evaluate = CompiledOrEager(self._step_and_loss) if config.compile else self._step_and_loss

    @property
    def adapter(self):
        return self.policy.adapter

    def _initial_systems(self, plugins: registry.Registry) -> Systems:
        from aits.physics.initial import make_systems

        generator = plugins.get("initial_conditions", self.config.system.generator)
        return make_systems(generator, self.config.system.params, self.gravity, self.rng, self.dtype, self.device)

    # --- one batched step -------------------------------------------------------------------------

    def evaluate(self, s: Systems, energy: torch.Tensor, history: torch.Tensor,
                 counted: torch.Tensor | None = None) -> StepResult:
        """Predict dt, take one step, measure the relative energy error and the per-sample loss, for
        every system; ``counted`` (B,) marks the rows that count in the force-evaluation and
        non-finite counters (default: all)."""
        if self.policy.training:
            self.policy.eval()  # the gate judges the deployed, deterministic policy
        result = self._result(self._evaluate(*s.tensors(), energy, history))
        steps = 1  # counted as the eager path takes them: the step is retaken when a row was not finite
        if not result.all_finite:
            nonfinite = ~result.finite if counted is None else ~result.finite & counted
            self.counters.nonfinite_steps += int(nonfinite.sum())
            steps = 2
        rows = s.batch if counted is None else int(counted.sum())
        self.counters.force_evaluations += self.integrator.force_evaluations * rows * steps
        return result

    def _step_and_loss(self, pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, acc: torch.Tensor,
                       time: torch.Tensor, energy: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Policy, one step, energy error and per-sample loss as a pure function of tensors: what the
        config key ``compile`` compiles."""
        s = Systems(pos, vel, mass, acc, time)
        dt, log_ratio = self.policy(s, history)
        r = self._step(s, energy, dt, log_ratio)
        if torch.compiler.is_compiling() or not r.all_finite:
            # Retake the step with the graph of the non-finite rows cut, so that their NaN/inf cannot
            # reach the gradients (compiled: always, branch-free; the retaken step fuses with the first).
            r = self._step(s, energy, torch.where(r.finite, dt, dt.detach()), log_ratio)
        # only what a loss reads keeps its graph (compiled: a backward graph with fewer inputs)
        return (*r.new.detach().tensors(), r.energy.detach(), r.rel_dE, r.dt.detach(), r.log_ratio, r.finite,
                self.sample_losses(r))

    @staticmethod
    def _result(out: tuple[torch.Tensor, ...]) -> StepResult:
        return StepResult(Systems(*out[:5]), *out[5:])

    def _step(self, s: Systems, energy: torch.Tensor, dt: torch.Tensor, log_ratio: torch.Tensor) -> StepResult:
        new = self.integrator.step(s, dt, self.gravity)
        e_new = self.gravity.energy(new)
        rel = relative_energy_error(e_new, energy)
        finite = torch.isfinite(rel) & torch.isfinite(new.pos).all((1, 2)) & torch.isfinite(new.vel).all((1, 2))
        return StepResult(new, e_new, rel, dt, log_ratio, finite)

    def sample_losses(self, r: StepResult) -> torch.Tensor:
        """Per-sample loss; a non-finite step costs a bounded penalty that pushes its dt down. Eagerly
        an all-finite batch skips the penalty; compiled, it is computed branch-free (and fused)."""
        if not torch.compiler.is_compiling() and r.all_finite:
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
            # the whole batch is evaluated (fixed shapes); the finished systems are masked out
            active = remaining > 0
            if not bool(active.any()):
                break
            r = self.evaluate(self.systems, self.energy, self.history, counted=active)
            ok = active & r.finite & (r.rel_dE < cfg.energy_threshold)
            failed = active & ~ok
            recorded += self._accept(ok, r)
            accepted_err.append(r.rel_dE[ok].detach())
            accepted_ratio.append(r.log_ratio[ok].detach())
            remaining -= ok.long()
            retries.masked_fill_(ok, 0)
            n_failed = int(failed.sum())
            if n_failed == 0:
                continue
            self.optimise(r.losses[failed].mean())
            rejected += n_failed
            retrain += 1
            retries += failed.long()
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

    def _accept(self, ok: torch.Tensor, r: StepResult) -> int:
        """Advance the systems in ``ok`` (B,); record their pre-step samples unless still warming up."""
        keep = ok & (self.accepted_steps >= self.adapter.history_len)  # the first history_len steps are warm-up
        self.buffer.add(self.systems.index(keep), self.energy[keep], self.history[keep], r.dt[keep])
        if self.adapter.history_len:
            pushed = push_history(self.history, self.adapter.memory(self.systems, r.dt))
            self.history = torch.where(ok[:, None, None], pushed, self.history)
        self.systems = r.new.where(ok, self.systems)
        self.energy = torch.where(ok, r.energy, self.energy)
        self.accepted_steps += ok.long()
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
        n = min(cfg.replay_batch_size, self.buffer.size)  # distinct samples; with fixed shapes, padded rows follow
        for iteration in range(1, cfg.max_generalize_iters + 1):
            s, energy, history = self.buffer.sample(cfg.replay_batch_size, self.rng, pad=self.config.compile)
            counted = None if s.batch == n else torch.arange(s.batch, device=self.device) < n
            r = self.evaluate(s, energy, history, counted)
            gate = (r.finite & (r.rel_dE < cfg.energy_threshold))[:n]
            done = gate & (r.rel_dE[:n] >= cfg.E_lower) if cfg.done_criterion == "band" else gate
            stats.update(iterations=iteration, pass_rate=float(done.double().mean()),
                         gate_pass_rate=float(gate.double().mean()),
                         dt_over_tau_median=math.exp(median(r.log_ratio[:n].detach())))
            self.reporter.part2_progress(iteration, stats["pass_rate"])
            if bool(done.all()):
                stats["converged"] = True
                break
            self.optimise(r.losses[:n].mean())
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
