"""Part 2 cells: batched minibatches of the replay buffer, the per-sample reference loops, and with
``--compile`` the compiled iteration."""

from __future__ import annotations

import copy
import dataclasses
import time
from argparse import Namespace

from aits.interfaces import Integrator
from aits.training.step import StepResult
from aits.training.trainer import Trainer

from .builders import NEVER, build_config, filled_trainer, with_training
from .measure import Clock, Work, first_call, measure
from .results import Results

CALL_S = 0.1  # aim for generalize() calls of about this long, amortising its set-up as a real run does


def cells(args: Namespace, clock: Clock, res: Results, hidden: list[int], n: int) -> None:
    sizes = [m for m in args.minibatch if m * n * n <= args.max_pairs]
    for m in args.minibatch:
        if m not in sizes:
            res.emit("part2", {"bodies": n, "batch": m}, skipped=f"M*N^2 = {m * n * n} > --max-pairs")
    capacity = max(sizes + [args.ref_chunk])
    tr = filled_trainer(build_config(args, hidden, n, 1, replay_capacity=capacity, **NEVER), n, capacity)
    state = copy.deepcopy((tr.policy.state_dict(), tr.optimizer.state_dict()))  # state_dict() shares storage

    def fresh() -> None:
        tr.policy.load_state_dict(state[0])
        tr.optimizer.load_state_dict(state[1])

    for m in sizes:
        fresh()
        res.emit("part2", {"bodies": n, "batch": m}, **timed_generalize(args, clock, tr, m), unit="samples")
    if args.ref_samples > 0:
        for kind, mode in (("part2_ref", "accumulate"), ("part2_ref_step", "step")):
            fresh()
            res.emit(kind, {"bodies": n, "batch": 1}, **reference_loop(args, clock, tr, mode), unit="samples")
    if args.compile:
        m = 512 if 512 in args.minibatch else args.minibatch[-1]
        res.emit("part2_compiled", {"bodies": n, "batch": m}, **generalize_cell(args, clock, hidden, n, m, compiled=True),
                 unit="samples")


def generalize_cell(args: Namespace, clock: Clock, hidden: list[int], n: int, m: int, compiled: bool = False,
                    integrator: Integrator | None = None) -> dict:
    """Part 2 at minibatch ``m`` on a fresh trainer (``compiled``: config key compile on, the first
    call timed apart as ``compile_s``; ``integrator``: instead of the configured one)."""
    work, compile_s = generalize_work(args, hidden, n, m, compiled, integrator)
    return {**measure(clock, work, args.min_time, args.warmup), "compile_s": compile_s}


def generalize_work(args: Namespace, hidden: list[int], n: int, m: int, compiled: bool = False,
                    integrator: Integrator | None = None) -> tuple[Work, float]:
    """The work of :func:`generalize_cell`, compiled (when it is) and calibrated; and the first call's seconds."""
    config = build_config(args, hidden, n, 1, replay_capacity=m, replay_batch_size=m, **NEVER)
    tr = filled_trainer(dataclasses.replace(config, compile=compiled), n, m, integrator)
    return calibrated(tr, m)


def timed_generalize(args: Namespace, clock: Clock, tr: Trainer, m: int) -> dict:
    """``Trainer.generalize()`` at minibatch ``m``, its first call (compiling, if it does) apart."""
    work, compile_s = calibrated(tr, m)
    return {**measure(clock, work, args.min_time, args.warmup), "compile_s": compile_s}


def calibrated(tr: Trainer, m: int) -> tuple[Work, float]:
    """``Trainer.generalize()`` at minibatch ``m`` in calls of about ``CALL_S``, and the seconds of
    its first call (compilation, with the config key compile; 0 eagerly)."""
    tr.config = with_training(tr.config, replay_batch_size=m, max_generalize_iters=1)
    generalize = generalize_fn(tr, m)
    first = first_call(generalize)
    t0 = time.perf_counter()
    generalize()
    per_iter = time.perf_counter() - t0
    tr.config = with_training(tr.config, max_generalize_iters=max(1, min(50, int(CALL_S / max(per_iter, 1e-6)))))
    return generalize, first if tr.config.compile else 0.0


def generalize_fn(tr: Trainer, m: int) -> Work:
    """``Trainer.generalize()`` over a buffer no minibatch of which converges."""
    def generalize() -> tuple[int, int]:
        out = tr.generalize()
        if out["converged"]:
            raise RuntimeError("generalize() converged on a gate nothing should pass")
        return out["iterations"], out["iterations"] * min(m, tr.population.buffer.size)

    return generalize


def reference_loop(args: Namespace, clock: Clock, tr: Trainer, mode: str) -> dict:
    """The per-sample Part 2: each sample of a minibatch evaluated alone (B = 1) in a Python loop.

    ``accumulate``: backprop each sample's loss, one optimizer step per chunk (the same update as
    the batched mean). ``step``: an optimizer step after every sample (``Executor.optimise``).
    Warm-up on one chunk, then timed until ``--ref-samples`` samples and ``--min-time`` are done,
    or ``--ref-max-time`` has passed.
    """
    chunk = args.ref_chunk

    def one_chunk() -> int:
        s, energy, history, cached = tr.population.buffer.gather(tr.population.buffer.indices(chunk, tr.rng))
        k = s.batch

        def one(i: int) -> StepResult:  # the i-th sample alone, with its stored features as the batched path has them
            row = slice(i, i + 1)
            return tr.stepper.evaluate(s.index(row), energy[row], history[row], 0,
                                       None if cached is None else (cached[0][row], cached[1][row]))

        if mode == "step":
            for i in range(k):
                tr.executors.eager.optimise(tr.stepper.sample_losses(one(i)).mean())
            return k
        tr.policy.train()
        tr.optimizer.zero_grad()
        for i in range(k):
            r = one(i)
            (tr.stepper.sample_losses(r).mean() / k).backward()
        tr.optimizer.step()  # clips the gradient norm first, as Executor.optimise
        return k

    mem0 = clock.memory_start()
    one_chunk()
    clock.sync()
    samples, t0 = 0, time.perf_counter()
    while True:
        samples += one_chunk()
        elapsed = time.perf_counter() - t0
        if (samples >= args.ref_samples and elapsed >= args.min_time) or elapsed >= args.ref_max_time:
            break
    clock.sync()
    seconds = time.perf_counter() - t0
    peak, how = clock.memory_peak(mem0)
    return {"iterations": samples, "units": samples, "seconds": seconds, "iter_per_s": samples / seconds,
            "rate": samples / seconds, "s_per_iter": seconds / samples, "peak_mb": peak, "memory": how}
