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

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (*self.new.tensors(), self.energy, self.rel_dE, self.dt, self.log_ratio, self.finite, self.losses)

    @classmethod
    def of(cls, tensors: tuple[torch.Tensor, ...]) -> StepResult:
        """The inverse of :meth:`tensors`."""
        return cls(Systems(*tensors[:5]), *tensors[5:])


@dataclass
class Counters:
    force_evaluations: int = 0
    optimizer_steps: int = 0
    nonfinite_steps: int = 0


def median(x: torch.Tensor) -> float:
    return float(x.median()) if x.numel() else math.nan


class CompiledOrEager:
    """Functions compiled by ``torch.compile`` for fixed shapes (one graph per input shape). If
    compiling one fails (e.g. no C++ compiler): a one-line warning, and :meth:`run` returns None from
    then on, so that the caller takes its eager path."""

    def __init__(self, *fns: Callable[..., tuple[torch.Tensor, ...]]) -> None:
        self.compiled: dict[Callable, Callable] | None = None
        try:
            self.compiled = {fn: torch.compile(fn, dynamic=False) for fn in fns}
        except Exception as exc:
            self._fall_back(exc)

    def run(self, fn: Callable[..., tuple[torch.Tensor, ...]], *args: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """Compiled ``fn(*args)``; None once compiling has failed."""
        if self.compiled is not None:
            try:
                return self.compiled[fn](*args)
            except Exception as exc:
                self._fall_back(exc)
        return None

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
        self._parameter_names = [name for name, _ in self.policy.named_parameters()]
        self.systems = self._initial_systems(plugins)
        self.energy = self.gravity.energy(self.systems)
        self.history = adapter.empty_history(self.systems)
        self.accepted_steps = torch.zeros(self.systems.batch, dtype=torch.int64, device=self.device)
        self.buffer = ReplayBuffer(config.training.replay_capacity, self.systems.bodies, self.systems.dims,
                                   adapter.history_len, adapter.memory_dim, self.dtype, self.device)
        self.epoch = 0
        self.metrics: list[dict] = []
        self.counters = Counters()
        # compile: a Part 1 and a Part 2 iteration, each one graph for fixed shapes
        self._compiled = CompiledOrEager(self._collect_step, self._generalize_step) if config.compile else None

    @property
    def adapter(self):
        return self.policy.adapter

    def _initial_systems(self, plugins: registry.Registry) -> Systems:
        from aits.systems import make_systems

        generator = plugins.get("initial_conditions", self.config.system.generator)
        return make_systems(generator, self.config.system.params, self.gravity, self.rng, self.dtype, self.device)

    # --- one batched step -------------------------------------------------------------------------

    def evaluate(self, s: Systems, energy: torch.Tensor, history: torch.Tensor,
                 counted: torch.Tensor | None = None) -> StepResult:
        """Predict dt, take one step, measure the relative energy error and the per-sample loss, for
        every system; ``counted`` (B,) marks the rows that count in the force-evaluation and
        non-finite counters (default: all)."""
        self._deploy()
        result = self._outcome(s, energy, *self.policy(s, history))
        self._count(result, counted)
        return result

    def _deploy(self) -> None:
        if self.policy.training:
            self.policy.eval()  # the gate judges the deployed, deterministic policy

    def _count(self, r: StepResult, counted: torch.Tensor | None = None) -> None:
        """Count one batched step as the eager path takes it (retaken when a row was not finite);
        ``counted`` (B,) marks the rows that count (default: all)."""
        rows = r.finite.numel() if counted is None else int(counted.sum())
        nonfinite = 0 if r.all_finite else int((~r.finite if counted is None else ~r.finite & counted).sum())
        self._count_step(rows, nonfinite, not r.all_finite)

    def _count_step(self, rows: int, nonfinite_rows: int, retaken: bool) -> None:
        self.counters.nonfinite_steps += nonfinite_rows
        self.counters.force_evaluations += self.integrator.force_evaluations * rows * (2 if retaken else 1)

    def _outcome(self, s: Systems, energy: torch.Tensor, dt: torch.Tensor, log_ratio: torch.Tensor) -> StepResult:
        """The step with the policy's ``dt``, its energy error and per-sample loss."""
        r = self._step(s, energy, dt, log_ratio)
        if torch.compiler.is_compiling() or not r.all_finite:
            # Retake the step with the graph of the non-finite rows cut, so that their NaN/inf cannot
            # reach the gradients (compiled: always, branch-free; the retaken step fuses with the first).
            r = self._step(s, energy, torch.where(r.finite, dt, dt.detach()), log_ratio)
        r.new, r.energy, r.dt = r.new.detach(), r.energy.detach(), r.dt.detach()  # only what a loss reads keeps its graph
        r.losses = self.sample_losses(r)
        return r

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
        self._optimizer_step()

    def _optimizer_step(self) -> None:
        if self.optimizer.step():
            self.counters.optimizer_steps += 1

    def _compile(self, rows: int) -> bool:
        """Whether an iteration over ``rows`` systems runs compiled: with ``compile`` on, when they fit
        one chunk (chunked iterations run eagerly)."""
        return self._compiled is not None and len(self._chunks(rows)) == 1

    def _chunks(self, rows: int) -> list[slice]:
        """``rows`` systems cut into chunks of at most ``training.max_chunk_pairs`` body pairs."""
        size = max(1, self.config.training.max_chunk_pairs // self.systems.bodies**2)
        return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]

    # --- one compiled training iteration (config key compile) ---------------------------------

    def _train_step(self, flat: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: torch.Tensor,
                    s: Systems, energy: torch.Tensor, history: torch.Tensor,
                    weigh: Callable[[StepResult], torch.Tensor]) -> tuple[StepResult, torch.Tensor]:
        """Inside a compiled graph: the step and losses of :meth:`evaluate`, the gradient of
        ``sum(w * loss)`` with ``w = weigh(outcome)`` by ``torch.func``, and :meth:`ClippedAdam.update`
        number ``step`` of the optimizer's tensors, applied in place when some weight is positive and
        the gradient is finite (the eager loop's conditions). Returns the outcome and whether applied."""
        def weighted_loss(params: torch.Tensor) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
            named = dict(zip(self._parameter_names, self.optimizer.views(params)))
            r = self._outcome(s, energy, *torch.func.functional_call(self.policy, named, (s, history)))
            w = weigh(r)
            return (w * r.losses).sum(), (r.tensors(), w)

        grad, (outcome, w) = torch.func.grad(weighted_loss, has_aux=True)(flat)
        norm = torch.linalg.vector_norm(grad)
        apply = torch.isfinite(norm) & (w > 0).any()
        updated = [flat.clone(), exp_avg.clone(), exp_avg_sq.clone()]
        self.optimizer.update(updated[0], grad, updated[1], updated[2], self.optimizer.clip_factor(norm), step)
        for old, new in zip((flat, exp_avg, exp_avg_sq), updated):
            old.copy_(torch.where(apply, new, old))
        return StepResult.of(outcome), apply

    def _optimizer_tensors(self) -> tuple[torch.Tensor, ...]:
        """The optimizer's tensors and the number of its next update, as :meth:`_train_step` takes them."""
        opt = self.optimizer
        return opt.flat, opt.exp_avg, opt.exp_avg_sq, torch.tensor(opt.steps + 1, dtype=self.dtype, device=self.device)

    def _count_update(self, applied: bool) -> None:
        if applied:
            self.optimizer.steps += 1
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
        iterate = self._collect_iteration_compiled if self._compile(self.systems.batch) else self._collect_iteration
        while True:
            # the whole batch is evaluated (fixed shapes); the finished systems are masked out
            active = remaining > 0
            if not bool(active.any()):
                break
            r = iterate(active)
            ok = active & self._passes_gate(r)
            n_ok = int(ok.sum())
            if n_ok:
                recorded += self._accept(ok, r)
                accepted_err.append(r.rel_dE[ok].detach())
                accepted_ratio.append(r.log_ratio[ok].detach())
                remaining -= ok.long()
                retries.masked_fill_(ok, 0)
            n_failed = int(active.sum()) - n_ok
            if n_failed == 0:
                continue
            failed = active & ~ok
            rejected += n_failed
            retrain += 1
            retries += failed.long()
            self.reporter.part1_progress(target - int(remaining.sum()), target, retrain)
            if cfg.max_retrain_steps and int(retries.max()) >= cfg.max_retrain_steps:
                raise RetrainCapHit(
                    f"Part 1 retrained {cfg.max_retrain_steps} times on one state without an accepted step "
                    f"(training.max_retrain_steps); the policy cannot reach energy_threshold={cfg.energy_threshold:g}"
                )
        empty = self.energy[:0]
        errors, ratios = torch.cat([empty, *accepted_err]), torch.cat([empty, *accepted_ratio])
        return {
            "accepted": int(errors.numel()), "rejected": rejected, "retrain_iters": retrain, "recorded": recorded,
            "rel_dE_median": median(errors), "rel_dE_max": float(errors.max()) if errors.numel() else math.nan,
            "dt_over_tau_median": math.exp(median(ratios)) if ratios.numel() else math.nan,
        }

    def _passes_gate(self, r: StepResult) -> torch.Tensor:
        return r.finite & (r.rel_dE < self.config.training.energy_threshold)

    def _collect_iteration(self, active: torch.Tensor) -> StepResult:
        """One Part 1 iteration: every system's step, then an optimizer step on the mean loss of the
        ``active`` systems the gate rejects, if any."""
        chunks = self._chunks(self.systems.batch)
        if len(chunks) > 1:
            return self._collect_iteration_chunked(active, chunks)
        r = self.evaluate(self.systems, self.energy, self.history, counted=active)
        failed = active & ~self._passes_gate(r)
        if bool(failed.any()):
            self.optimise(r.losses[failed].mean())
        return r

    def _collect_iteration_chunked(self, active: torch.Tensor, chunks: list[slice]) -> StepResult:
        """:meth:`_collect_iteration` one chunk of systems at a time: each chunk's rejected losses are
        backpropagated before the next is evaluated, and the summed gradient divided by their count."""
        self.optimizer.zero_grad()
        parts, n_failed = [], 0
        for rows in chunks:
            r = self.evaluate(self.systems.index(rows), self.energy[rows], self.history[rows], counted=active[rows])
            failed = active[rows] & ~self._passes_gate(r)
            k = int(failed.sum())
            if k:
                r.losses[failed].sum().backward()
                n_failed += k
            parts.append([t.detach() for t in r.tensors()])
        if n_failed:
            self.optimizer.grad.div_(n_failed)
            self._optimizer_step()
        return StepResult.of(tuple(torch.cat(ts) for ts in zip(*parts)))

    def _collect_iteration_compiled(self, active: torch.Tensor) -> StepResult:
        """:meth:`_collect_iteration` as one compiled call of :meth:`_collect_step`."""
        self._deploy()
        out = self._compiled.run(self._collect_step, *self._optimizer_tensors(), *self.systems.tensors(),
                                 self.energy, self.history, active)
        if out is None:
            return self._collect_iteration(active)
        r = StepResult.of(out[:-1])
        self._count(r, active)
        self._count_update(bool(out[-1]))
        return r

    def _collect_step(self, flat: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: torch.Tensor,
                      pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, acc: torch.Tensor, time: torch.Tensor,
                      energy: torch.Tensor, history: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One Part 1 iteration as a function of tensors (compiled into one graph): every system's step,
        and the optimizer step on the mean loss of the ``active`` systems the gate rejects."""
        def weigh(r: StepResult) -> torch.Tensor:
            failed = active & ~self._passes_gate(r)
            return failed / failed.sum().clamp_min(1)

        r, applied = self._train_step(flat, exp_avg, exp_avg_sq, step, Systems(pos, vel, mass, acc, time), energy,
                                      history, weigh)
        return *r.tensors(), applied

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
        compiled = self._compile(cfg.replay_batch_size)
        iterate = self._generalize_iteration_compiled if compiled else self._generalize_iteration
        log_ratio = self.energy[:0]  # none when max_generalize_iters is 0
        for iteration in range(1, cfg.max_generalize_iters + 1):
            idx = self.buffer.indices(cfg.replay_batch_size, self.rng, pad=compiled)
            n_done, n_gate, log_ratio = iterate(n, idx)
            stats.update(iterations=iteration, pass_rate=n_done / n, gate_pass_rate=n_gate / n)
            self.reporter.part2_progress(iteration, stats["pass_rate"])
            if n_done == n:
                stats["converged"] = True
                break
        stats["dt_over_tau_median"] = math.exp(median(log_ratio))
        return stats

    def _done(self, r: StepResult) -> tuple[torch.Tensor, torch.Tensor]:
        """Part 2's verdict per sample: (done, within the gate)."""
        gate = self._passes_gate(r)
        return (gate & (r.rel_dE >= self.config.training.E_lower) if self.config.training.done_criterion == "band"
                else gate), gate

    def _generalize_iteration(self, n: int, idx: torch.Tensor) -> tuple[int, int, torch.Tensor]:
        """One Part 2 iteration on the ``n`` distinct samples in replay slots ``idx[:n]``: evaluate, and
        an optimizer step unless all are done. Returns (done, within the gate, their log(dt / tau))."""
        chunks = self._chunks(n)
        if len(chunks) > 1:
            return self._generalize_iteration_chunked(idx[:n], chunks)
        s, energy, history = self.buffer.gather(idx[:n])
        r = self.evaluate(s, energy, history)
        done, gate = self._done(r)
        n_done = int(done.sum())
        if n_done < n:
            self.optimise(r.losses.mean())
        return n_done, int(gate.sum()), r.log_ratio.detach()

    def _generalize_iteration_chunked(self, slots: torch.Tensor, chunks: list[slice]) -> tuple[int, int, torch.Tensor]:
        """:meth:`_generalize_iteration` one chunk of samples at a time, each chunk's share of the mean
        loss backpropagated before the next is evaluated."""
        self.optimizer.zero_grad()
        n_done = n_gate = 0
        ratios = []
        for rows in chunks:
            r = self.evaluate(*self.buffer.gather(slots[rows]))
            (r.losses.sum() / slots.numel()).backward()
            done, gate = self._done(r)
            n_done, n_gate = n_done + int(done.sum()), n_gate + int(gate.sum())
            ratios.append(r.log_ratio.detach())
        if n_done < slots.numel():
            self._optimizer_step()
        return n_done, n_gate, torch.cat(ratios)

    def _generalize_iteration_compiled(self, n: int, idx: torch.Tensor) -> tuple[int, int, torch.Tensor]:
        """:meth:`_generalize_iteration` as one compiled call of :meth:`_generalize_step` on all of
        ``idx`` (padded to a fixed size), and one read of its counts."""
        self._deploy()
        weight = (torch.arange(idx.numel(), device=self.device) < n).to(self.dtype) / n
        out = self._compiled.run(self._generalize_step, *self._optimizer_tensors(), idx, weight)
        if out is None:
            return self._generalize_iteration(n, idx)
        counts, log_ratio = out
        n_done, n_gate, n_nonfinite, retaken, applied = counts.tolist()
        self._count_step(n, n_nonfinite, bool(retaken))
        self._count_update(bool(applied))
        return n_done, n_gate, log_ratio[:n]

    def _generalize_step(self, flat: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                         step: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One Part 2 iteration as a function of tensors (compiled into one graph): the samples in replay
        slots ``idx`` and the optimizer step on their ``weight``-ed loss (only counted samples, weight > 0),
        unless all of these are done.

        Returns the counted samples' (done, within the gate, not finite), whether the step was retaken
        and whether the update was applied, as one tensor; and every sample's log(dt / tau)."""
        s, energy, history = self.buffer.gather(idx)
        counted = weight > 0
        r, applied = self._train_step(flat, exp_avg, exp_avg_sq, step, s, energy, history,
                                      lambda r: weight * ~(self._done(r)[0] | ~counted).all())
        done, gate = self._done(r)
        counts = torch.stack([(done & counted).sum(), (gate & counted).sum(), (~r.finite & counted).sum(),
                              (~r.finite).any().long(), applied.long()])
        return counts, r.log_ratio.detach()

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
