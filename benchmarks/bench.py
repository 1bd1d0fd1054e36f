#!/usr/bin/env python
"""aits performance benchmark: Part 1, Part 2 (with a per-sample reference loop), simulation,
peak memory and how the cost grows with the batch size B and the number of bodies N.

    python benchmarks/bench.py                      # full run (16 minutes on 2 CPU cores with --compile; less without)
    python benchmarks/bench.py --quick              # smoke test, 1-2 minutes (the simulate cells compile first)
    python benchmarks/bench.py --json out.json      # also write every measurement as JSON
    python benchmarks/bench.py --device cuda        # on a GPU (skips cleanly without CUDA)

What each cell times (see benchmarks/README.md for the details):

* ``part1_retrain``  ``Stepper.evaluate`` + ``Executor.optimise`` on the same live state: what one
  Part 1 rejection costs (B = ``--part1-batch`` systems).
* ``part1_reject``   ``Trainer.collect()`` with a gate nothing passes and ``max_retrain_steps`` as
  a stop: the same rejection, plus the bookkeeping of the real collect loop.
* ``part1_accept``   ``Trainer.collect()`` with a gate everything passes: evaluate + accept
  (buffer, history, scatter); rate = accepted system-steps/s.
* ``part2``          ``Trainer.generalize()`` over a filled replay buffer, a minibatch of M per
  iteration, never converging: (sample + evaluate + optimise) x M / time = samples/s.
* ``part2_ref``      the straightforward per-sample loop: for every sample of a minibatch
  evaluate it alone (B = 1) and backprop its loss, one optimizer step per chunk; samples/s.
* ``part2_ref_step`` the same with an optimizer step after every sample (``Executor.optimise``).
* ``*_compiled``     with ``--compile``: ``part1_retrain`` and ``part2`` at M = 512 with the config
  key ``compile`` on; the first call (compilation) is timed apart as ``compile_s``.
* ``simulate``       ``aits.simulation.engine.integrate`` with the ``learned`` policy wrapping the
  trainer's network (policy + step + energy every step); falls back to a lean loop
  ``policy(systems, history)`` + ``integrator.step`` under ``torch.inference_mode()`` when the
  engine is missing or fails (``--sim-engine`` picks); steps/s for B = 1 and system-steps/s for
  B = ``--sim-batch``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from aits import registry
from aits.config import RunConfig, default_config_path, load_config, read_yaml
from aits.interfaces import push_history
from aits.errors import RunFailed  # collect() raises one (RetrainCapHit) when max_retrain_steps is hit
from aits.training.build import build_trainer
from aits.training.trainer import Trainer

NEVER = {"energy_threshold": 1e-290, "E_lower": 1e-300}  # a gate (and a band) no step passes
ALWAYS = {"energy_threshold": 1e300}  # a gate every finite step passes

TARGETS = (  # (description, cell selector, threshold) -- on 2 CPU cores, [64, 64], float64, 2-body
    ("Part 2 at minibatch 512 vs the per-sample reference loop", "speedup512", 500.0),
    ("Part 1 retrain iterations/s", "part1_retrain", 1000.0),
    ("single-system simulate steps/s", "simulate1", 20000.0),
)


# --- measuring ------------------------------------------------------------------------------------


class Clock:
    """perf_counter timing that waits for the GPU; per-cell peak memory."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.hwm_ok = self._reset_hwm()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @staticmethod
    def _status_kb(field: str) -> int | None:
        try:
            match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        except OSError:
            return None
        return int(match.group(1)) if match else None

    @staticmethod
    def _reset_hwm() -> bool:
        """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def memory_start(self) -> float:
        gc.collect()
        _malloc_trim()  # hand freed heap pages back, so the cell's peak is not hidden in cached pages
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device) / 2**20
        rss = self._status_kb("VmRSS")
        self.hwm_ok = self.hwm_ok and self._reset_hwm()
        return (rss or 0) / 1024

    def memory_peak(self, start_mb: float) -> tuple[float | None, str]:
        """Peak memory of the cell above its start: (MB, what was measured)."""
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20 - start_mb, "cuda max_memory_allocated"
        if self.hwm_ok:
            hwm = self._status_kb("VmHWM")
            if hwm is not None:
                return hwm / 1024 - start_mb, "VmHWM after clear_refs"
        # no per-cell mark available: the process-wide high-water mark (monotone across cells)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process ru_maxrss"


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(clock: Clock, fn: Callable[[], tuple[int, int]], min_time: float, warmup: int, windows: int = 5) -> dict:
    """Call ``fn`` (returning (iterations, units) done) for warm-up, then until ``min_time`` seconds
    have passed, in ``windows`` consecutive windows of at least ``min_time / windows`` each.

    ``rate`` is over the whole timed span (total units / total time); the per-window rates (their
    median, best and spread) show how noisy the machine was."""
    mem0 = clock.memory_start()
    start = time.perf_counter()
    for _ in range(max(warmup, 1)):  # at least one warm-up call; stop early when calls are slow
        fn()
        if time.perf_counter() - start > max(min_time, 0.25):
            break
    clock.sync()
    iterations = units = 0
    window_rates = []
    c0, t0 = time.process_time(), time.perf_counter()
    for w in range(windows):
        w_units, w0 = 0, time.perf_counter()
        while True:
            it, un = fn()
            iterations, units, w_units = iterations + it, units + un, w_units + un
            now = time.perf_counter()
            if now - w0 >= min_time / windows or now - t0 >= min_time:
                clock.sync()
                now = time.perf_counter()
                break
        window_rates.append(w_units / (now - w0))
        if now - t0 >= min_time:
            break
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak, how = clock.memory_peak(mem0)
    return {"iterations": iterations, "units": units, "seconds": seconds, "cpu_seconds": cpu,
            "iter_per_s": iterations / seconds, "rate": units / seconds, "s_per_iter": seconds / iterations,
            "window_rates": window_rates, "rate_median": sorted(window_rates)[len(window_rates) // 2],
            "rate_best": max(window_rates), "spread": max(window_rates) / min(window_rates),
            "peak_mb": peak, "memory": how}


# --- set-up ---------------------------------------------------------------------------------------


def system_spec(n: int) -> tuple[str, dict]:
    """For N = 2 the embedded default training set (eccentric binaries), with its count dropped;
    for N >= 3 bound random clusters of N equal masses."""
    if n == 2:
        system = read_yaml(default_config_path()).get("system", {})
        params = {k: v for k, v in system.get("params", {}).items() if k != "count"}
        return system.get("generator", "binary_batch"), params
    return "cluster", {"n": n, "dims": 3}


def build_config(args, hidden: list[int], n: int, count: int, **training):
    """The embedded default config with this cell's settings (and the user's --set) as overrides."""
    generator, params = system_spec(n)
    overrides = [f"device={args.device}", f"dtype={args.dtype}", f"seed={args.seed}",
                 f"model.hidden={json.dumps(list(hidden))}", f"system.generator={generator}",
                 f"system.params={json.dumps({**params, 'count': count})}"]
    overrides += [f"training.{key}={json.dumps(value)}" for key, value in training.items()]
    if args.threads is not None and "threads" in {f.name for f in dataclasses.fields(RunConfig)}:
        overrides.append(f"threads={args.threads}")  # the Trainer sets torch's thread count from it
    return load_config(None, overrides + list(args.set))


def make_batch(trainer: Trainer, n: int, count: int):
    from aits.systems import make_systems

    generator, params = system_spec(n)
    gen = registry.get_registry().get("initial_conditions", generator)
    return make_systems(gen, {**params, "count": count}, trainer.gravity, trainer.rng, trainer.dtype, trainer.device)


# --- the cells ------------------------------------------------------------------------------------


def part1_cells(args, clock, hidden, n, batch, emit) -> None:
    tag = {"bodies": n, "batch": batch}
    if batch * n * n > args.max_pairs:
        for kind in ("part1_retrain", "part1_reject", "part1_accept"):
            emit(kind, tag, skipped=f"B*N^2 = {batch * n * n} > --max-pairs")
        return

    # evaluate + optimise on the same state: what a rejection costs
    result = measure(clock, retrain_fn(build_trainer(build_config(args, hidden, n, batch))), args.min_time, args.warmup)
    emit("part1_retrain", tag, **result, unit="iterations")

    # the real collect loop, every step rejected, stopped by the retrain cap (calls of ~0.1 s)
    cap = max(2, min(50, round(0.1 / result["s_per_iter"])))
    reject = reject_fn(build_trainer(build_config(args, hidden, n, batch, max_retrain_steps=cap, **NEVER)), cap)
    emit("part1_reject", tag, **measure(clock, reject, args.min_time, args.warmup), unit="iterations")

    # the real collect loop, every step accepted: evaluate + accept
    steps = 4
    tr = build_trainer(build_config(args, hidden, n, batch, steps_per_epoch=steps, **ALWAYS))

    def accept():
        m = tr.collect()
        return m["accepted"] // batch, m["accepted"]

    emit("part1_accept", tag, **measure(clock, accept, args.min_time, args.warmup), unit="accepted steps")


def retrain_fn(tr: Trainer) -> Callable[[], tuple[int, int]]:
    """One Part 1 rejection on the trainer's live state: evaluate + optimise."""
    s, energy, history = tr.population.systems, tr.population.energy, tr.population.history

    def retrain():
        tr.executors.eager.optimise(tr.stepper.evaluate(s, energy, history).losses.mean())
        return 1, 1

    return retrain


def reject_fn(tr: Trainer, cap: int) -> Callable[[], tuple[int, int]]:
    """``Trainer.collect()`` with a gate nothing passes, stopped after ``cap`` rejections by the
    trainer's ``max_retrain_steps`` (which must be ``cap``)."""
    def reject():
        try:
            tr.collect()
        except RunFailed as exc:
            if "max_retrain_steps" not in str(exc):
                raise
            return cap, cap
        raise RuntimeError("collect() accepted a step through a gate nothing should pass")

    return reject


def generalize_fn(tr: Trainer, m: int) -> Callable[[], tuple[int, int]]:
    """``Trainer.generalize()`` over a buffer no minibatch of which converges."""
    def generalize():
        out = tr.generalize()
        if out.get("converged"):
            raise RuntimeError("generalize() converged on a gate nothing should pass")
        return out["iterations"], out["iterations"] * min(m, tr.population.buffer.size)

    return generalize


def filled_trainer(config, n: int, capacity: int) -> Trainer:
    """A trainer whose replay buffer holds ``capacity`` fresh systems."""
    tr = build_trainer(config)
    s = make_batch(tr, n, capacity)
    tr.population.buffer.add(s, tr.gravity.energy(s), tr.adapter.empty_history(s), torch.zeros_like(s.time))
    return tr


def compiled_cells(args, clock, hidden, n, emit) -> None:
    """--compile: Part 1 rejections and Part 2 at M = 512 with the config key compile on, each
    iteration one compiled graph; the first call, where compilation happens, is timed apart (compile_s).
    The compiled Part 1 row times the real collect loop with every step rejected (as P1 reject): its
    retrain iteration exists only inside that loop."""
    def timed(kind: str, tag: dict, fn: Callable[[], tuple[int, int]], unit: str) -> None:
        t0 = time.perf_counter()
        fn()
        compile_s = time.perf_counter() - t0
        emit(kind, tag, **measure(clock, fn, args.min_time, args.warmup), compile_s=compile_s, unit=unit)

    batch, cap = args.part1_batch[0], 50
    config = build_config(args, hidden, n, batch, max_retrain_steps=cap, **NEVER)
    timed("part1_retrain_compiled", {"bodies": n, "batch": batch},
          reject_fn(build_trainer(dataclasses.replace(config, compile=True)), cap), "iterations")
    m = 512 if 512 in args.minibatch else args.minibatch[-1]
    config = build_config(args, hidden, n, 1, replay_capacity=m, replay_batch_size=m, max_generalize_iters=10, **NEVER)
    tr = filled_trainer(dataclasses.replace(config, compile=True), n, m)
    timed("part2_compiled", {"bodies": n, "batch": m}, generalize_fn(tr, m), "samples")


def part2_cells(args, clock, hidden, n, emit) -> None:
    sizes = [m for m in args.minibatch if m * n * n <= args.max_pairs]
    for m in args.minibatch:
        if m not in sizes:
            emit("part2", {"bodies": n, "batch": m}, skipped=f"M*N^2 = {m * n * n} > --max-pairs")
    if not sizes and args.ref_samples <= 0:
        return
    capacity = max(sizes + [args.ref_chunk])
    tr = filled_trainer(build_config(args, hidden, n, 1, replay_capacity=capacity, **NEVER), n, capacity)
    state = copy.deepcopy((tr.policy.state_dict(), tr.optimizer.state_dict()))  # state_dict() shares storage

    for m in sizes:
        tr.policy.load_state_dict(state[0])
        tr.optimizer.load_state_dict(state[1])
        tr.config = _with_training(tr.config, replay_batch_size=m, max_generalize_iters=1)
        generalize = generalize_fn(tr, m)
        # aim for calls of ~0.1 s so the generalize() set-up is amortised like in a real run
        t0 = time.perf_counter()
        generalize()
        per_iter = time.perf_counter() - t0
        tr.config = _with_training(tr.config, max_generalize_iters=max(1, min(50, int(0.1 / max(per_iter, 1e-6)))))
        emit("part2", {"bodies": n, "batch": m}, **measure(clock, generalize, args.min_time, args.warmup),
             unit="samples")

    for kind, mode in (("part2_ref", "accumulate"), ("part2_ref_step", "step")):
        if args.ref_samples > 0:
            tr.policy.load_state_dict(state[0])
            tr.optimizer.load_state_dict(state[1])
            emit(kind, {"bodies": n, "batch": 1}, **reference_loop(args, clock, tr, mode), unit="samples")


def reference_loop(args, clock: Clock, tr: Trainer, mode: str) -> dict:
    """The per-sample Part 2: each sample of a minibatch evaluated alone (B = 1) in a Python loop.

    ``accumulate``: backprop each sample's loss, one optimizer step per chunk (the same update as
    the batched mean). ``step``: an optimizer step after every sample (``Executor.optimise``).
    """
    chunk = args.ref_chunk

    def one_chunk() -> int:
        s, energy, history = tr.population.buffer.sample(chunk, tr.rng)
        k = s.batch
        if mode == "step":
            for i in range(k):
                r = tr.stepper.evaluate(s.index(slice(i, i + 1)), energy[i : i + 1], history[i : i + 1])
                tr.executors.eager.optimise(tr.stepper.sample_losses(r).mean())
            return k
        tr.policy.train()
        tr.optimizer.zero_grad()
        for i in range(k):
            r = tr.stepper.evaluate(s.index(slice(i, i + 1)), energy[i : i + 1], history[i : i + 1])
            (tr.stepper.sample_losses(r).mean() / k).backward()
        tr.optimizer.step()  # clips the gradient norm first, as Executor.optimise
        return k

    # bounded: warm-up on one chunk, then time until ref_samples samples (and min_time) are done,
    # but stop after ref_max_time seconds on a slow machine
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


def simulate_cells(args, clock, hidden, n, emit) -> None:
    tr = build_trainer(build_config(args, hidden, n, 1))
    tr.policy.eval()
    for batch in args.sim_batch:
        tag = {"bodies": n, "batch": batch}
        if batch * n * n > args.max_pairs:
            emit("simulate", tag, skipped=f"B*N^2 = {batch * n * n} > --max-pairs")
            continue
        unit = "steps" if batch == 1 else "system-steps"
        engines = {"auto": ["engine"], "both": ["engine", "lean"]}.get(args.sim_engine, [args.sim_engine])
        for engine in engines:
            kind = "simulate" if engine == engines[0] else f"simulate_{engine}"
            if engine == "engine":
                try:
                    result, label = simulate_engine(args, clock, tr, n, batch)
                except Exception as exc:  # the engine is young: fall back to the lean loop, say why
                    if args.sim_engine != "auto":
                        raise
                    label = f"lean loop (benchmarks); aits.simulation failed: {type(exc).__name__}: {exc}"[:200]
                    result = simulate_lean(args, clock, tr, n, batch)
            else:
                result, label = simulate_lean(args, clock, tr, n, batch), "lean loop (benchmarks)"
            emit(kind, tag, **result, unit=unit, engine=label)


def simulate_engine(args, clock, tr: Trainer, n: int, batch: int) -> tuple[dict, str]:
    """``aits.simulation.engine.integrate`` with the learned policy: one policy call, one step and one
    energy evaluation per step, host checks every ``check_every`` steps; compiled with
    ``--sim-compile on`` (the compilation is done before the timing and reported as ``compile_s``)."""
    from aits.builtin.policies import Learned
    from aits.simulation.chunks import CHUNK
    from aits.simulation.engine import integrate
    from aits.simulation.problem import PolicySpec, Setup

    s = make_batch(tr, n, batch)
    far = torch.full((batch,), 1e300, dtype=s.time.dtype, device=s.time.device)  # never arrives
    setup = Setup(s, far, tr.gravity, tr.integrator)
    spec = PolicySpec("learned", Learned, {"model": tr.policy})
    values = torch.ones(batch, dtype=s.time.dtype, device=s.time.device)
    compiled = args.sim_compile == "on"
    plan = {"steps": 2 * CHUNK, "check_every": 2 * CHUNK}

    def run():
        out = integrate(setup, spec, values, max_steps=plan["steps"], check_every=plan["check_every"],
                        compiled=compiled)
        if out.iterations != plan["steps"]:
            raise RuntimeError(f"integrate() stopped after {out.iterations} of {plan['steps']} steps")
        if compiled and not out.compile_time_s:
            raise RuntimeError("integrate() did not compile")
        return out.iterations, out.iterations * batch

    t0 = time.perf_counter()
    run()  # compiles (when compiled)
    compile_s = time.perf_counter() - t0 if compiled else 0.0
    if compiled:
        print(f"  simulate N={n} B={batch}: compiled in {compile_s:.1f} s (not timed)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    run()  # calibrate: calls of ~0.2 s, so the per-call set-up is amortised as in a long run
    per_step = (time.perf_counter() - t0) / plan["steps"]
    steps = max(CHUNK if compiled else 1, min(51200, round(0.2 / max(per_step, 1e-7))))  # a compiled call: CHUNK steps
    plan.update(steps=steps if steps < 128 else 128 * round(steps / 128), check_every=min(128, steps))
    how = f"compiled, {CHUNK} steps per call" if compiled else "eager"
    label = f"aits.simulation.engine.integrate (learned policy, energy every step, host check every 128 steps; {how})"
    return {**measure(clock, run, args.min_time, min(args.warmup, 1)), "compile_s": compile_s}, label


def simulate_lean(args, clock, tr: Trainer, n: int, batch: int) -> dict:
    """The lean loop: policy(systems, history) + integrator.step, no energy, no checks."""
    policy, integrator, gravity, adapter = tr.policy, tr.integrator, tr.gravity, tr.adapter
    with torch.inference_mode():
        state = {"s": make_batch(tr, n, batch)}
        state["h"] = adapter.empty_history(state["s"])
        remembers = adapter.history_len > 0

        def step():
            s, h = state["s"], state["h"]
            dt, _ = policy(s, h)
            if remembers:
                state["h"] = push_history(h, adapter.memory(s, dt))
            state["s"] = integrator.step(s, dt, gravity)
            return 1, batch

        return measure(clock, step, args.min_time, args.warmup)


def _with_training(config, **changes):
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **changes))


# --- reporting ------------------------------------------------------------------------------------


def net_name(hidden: list[int]) -> str:
    return "x".join(str(h) for h in hidden)


def fmt_rate(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def fmt_mb(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def table(headers: list[str], rows: list[list[str]], title: str) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    out = [title, line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x)."""
    if len(xs) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx if sxx else None


def fmt_slope(points: list[tuple[float, float]]) -> str:
    """Fitted exponent over all points, and (in brackets) between the two largest."""
    if len(points) < 2:
        return "-"
    points = sorted(points)
    full = slope(*zip(*points))
    last = slope(*zip(*points[-2:]))
    return f"{full:.2f} ({last:.2f})"


class Results:
    def __init__(self) -> None:
        self.cells: list[dict] = []

    def get(self, net: str, kind: str, bodies: int, batch: int | None = None) -> dict | None:
        for c in self.cells:
            if c["net"] == net and c["kind"] == kind and c["bodies"] == bodies and (batch is None or c["batch"] == batch):
                return c
        return None

    def rate(self, *key) -> float | None:
        c = self.get(*key)
        return None if c is None or c.get("skipped") else c["rate"]


def speedup(res: Results, net: str, n: int, m: int, ref: str = "part2_ref", kind: str = "part2") -> float | None:
    fast, slow = res.rate(net, kind, n, m), res.rate(net, ref, n)
    return fast / slow if fast and slow else None


def exponent_entry(net: str, workload: str, vs: str, points: list, **fixed) -> dict:
    return {"net": net, "workload": workload, "vs": vs, **fixed, "points": points,
            "exponent": slope(*zip(*points)) if len(points) > 1 else None,
            "exponent_last_two": slope(*zip(*sorted(points)[-2:])) if len(points) > 1 else None}


def report(args, res: Results, nets: list[str]) -> tuple[str, dict]:
    p1b, sims, mbs = args.part1_batch[0], args.sim_batch, args.minibatch
    cmp_m = 512 if 512 in mbs else mbs[-1]
    sim_kinds = [k for k in ("simulate", "simulate_lean") if any(c["kind"] == k for c in res.cells)] or ["simulate"]
    text = []

    # throughput
    head_a = ["net", "N", "P1 retrain it/s", "P1 collect-loop rejects it/s", "P1 accepted steps/s"]
    for kind in sim_kinds:
        tag = "" if kind == "simulate" else " (lean)"
        head_a += [(f"sim steps/s B=1{tag}" if b == 1 else f"sim sys-steps/s B={b}{tag}") for b in sims]
    head_b = ["net", "N"] + [f"M={m}" for m in mbs]
    head_b += ["ref (accumulate)", f"M={cmp_m} / ref", "ref (step each)", f"M={cmp_m} / ref-step"]
    rows_a, rows_b, mem_rows = [], [], []
    mem_cells = ([("part1_retrain", p1b), ("part1_accept", p1b)] + [("part2", m) for m in mbs]
                 + [("part2_ref", 1)] + [("simulate", b) for b in sims])
    for net in nets:
        for n in args.bodies:
            row = [net, str(n)] + [fmt_rate(res.rate(net, k, n, p1b)) for k in ("part1_retrain", "part1_reject", "part1_accept")]
            row += [fmt_rate(res.rate(net, kind, n, b)) for kind in sim_kinds for b in sims]
            rows_a.append(row)
            row = [net, str(n)] + [fmt_rate(res.rate(net, "part2", n, m)) for m in mbs]
            for ref in ("part2_ref", "part2_ref_step"):
                sp = speedup(res, net, n, cmp_m, ref)
                row += [fmt_rate(res.rate(net, ref, n)), "-" if sp is None else f"{sp:.0f}x"]
            rows_b.append(row)
            mem = [net, str(n)]
            for kind, batch in mem_cells:
                c = res.get(net, kind, n, batch)
                mem.append("-" if c is None or c.get("skipped") else fmt_mb(c["peak_mb"]))
            mem_rows.append(mem)
    engines = sorted({c.get("engine") for c in res.cells if c["kind"] == "simulate" and c.get("engine")})
    text.append(table(head_a, rows_a, f"Part 1 (B={p1b} live systems) and simulate -- higher is better, '-' = not run"
                      + "".join(f"\n  simulate: {e}" for e in engines)))
    text.append(table(head_b, rows_b, f"Part 2 samples/s by minibatch M, and the per-sample reference loops "
                      f"(B=1; ratio = batched M={cmp_m} / reference, same run)"))
    how = next((c["memory"] for c in res.cells if not c.get("skipped")), "?")
    mem_head = ["net", "N", "P1 retrain", "P1 accept"] + [f"P2 M={m}" for m in mbs] + ["P2 ref"]
    mem_head += [f"sim B={b}" for b in sims]
    text.append(table(mem_head, mem_rows, f"Peak memory per cell, MB above the cell's start ({how})"))
    if args.compile:
        rows = []
        for net in nets:
            for n in args.bodies:
                row = [net, str(n)]
                for kind, batch in (("part1_retrain", p1b), ("part2", cmp_m)):
                    c = res.get(net, f"{kind}_compiled", n, batch)
                    row += [fmt_rate(res.rate(net, kind, n, batch)), fmt_rate(res.rate(net, f"{kind}_compiled", n, batch)),
                            "-" if c is None else f"{c['compile_s']:.1f}"]
                rows.append(row)
        text.append(table(["net", "N", "P1 retrain it/s", "compiled", "compile s", f"P2 M={cmp_m} samples/s", "compiled",
                           "compile s"], rows, "Eager vs compiled (config key compile); compile s = the first call"))

    # scaling
    scaling = []
    for net in nets:
        srows = []
        for n in args.bodies:
            pts = [(m, res.get(net, "part2", n, m)["s_per_iter"]) for m in mbs if res.rate(net, "part2", n, m)]
            srows.append([net, str(n)] + [f"{dict(pts)[m] * 1e3:.3g}" if m in dict(pts) else "-" for m in mbs]
                         + [fmt_slope(pts)])
            scaling.append(exponent_entry(net, "part2", "B", pts, bodies=n))
        row = [net, "exp vs N"]
        for m in mbs:
            pts = [(n, res.get(net, "part2", n, m)["s_per_iter"]) for n in args.bodies if res.rate(net, "part2", n, m)]
            row.append(fmt_slope(pts))
            scaling.append(exponent_entry(net, "part2", "N", pts, batch=m))
        srows.append(row + [""])
        text.append(table(["net", "N"] + [f"M={m}" for m in mbs] + ["exp vs B: all (last 2)"], srows,
                          f"Part 2 cost [{net}]: ms per iteration; fitted exponents a, b of time ~ B^a, ~ N^b "
                          "(least squares over all points; in brackets between the two largest)"))
        vrows = []
        workloads = ([("part1_retrain", p1b, f"Part 1 retrain, B={p1b}"), ("part1_accept", p1b, f"Part 1 accept, B={p1b}"),
                      ("part2_ref", 1, "Part 2 reference, per sample")]
                     + [(kind, b, f"{'simulate' if kind == 'simulate' else 'sim (lean)'}, B={b}")
                        for kind in sim_kinds for b in sims])
        for kind, batch, label in workloads:
            pts = [(n, res.get(net, kind, n, batch)["s_per_iter"]) for n in args.bodies if res.rate(net, kind, n, batch)]
            vrows.append([net, label] + [f"{dict(pts)[n] * 1e6:.4g}" if n in dict(pts) else "-" for n in args.bodies]
                         + [fmt_slope(pts)])
            scaling.append(exponent_entry(net, kind, "N", pts, batch=batch))
        for kind in sim_kinds:
            for n in args.bodies:
                pts = [(b, res.get(net, kind, n, b)["s_per_iter"]) for b in sims if res.rate(net, kind, n, b)]
                scaling.append(exponent_entry(net, kind, "B", pts, bodies=n))
        text.append(table(["net", "workload"] + [f"N={n}" for n in args.bodies] + ["exp vs N: all (last 2)"], vrows,
                          f"Time per iteration (one batched step) in microseconds vs N [{net}]"))

    # targets
    net = net_name([64, 64])
    checks = []
    if net in nets and 2 in args.bodies:
        values = {"speedup512": speedup(res, net, 2, 512), "part1_retrain": res.rate(net, "part1_retrain", 2, p1b),
                  "simulate1": res.rate(net, "simulate", 2, 1)}
        lines = []
        compiled = {"part1_retrain": res.rate(net, "part1_retrain_compiled", 2, p1b),  # with config key compile
                    "speedup512": speedup(res, net, 2, 512, kind="part2_compiled")}  # against the eager reference
        for desc, key, goal in TARGETS:
            v, vc = values[key], compiled.get(key)
            status = "not measured" if v is None else "MET" if v >= goal else "MISSED"
            if status == "MISSED" and vc is not None and vc >= goal:
                status = "MET compiled"
            checks.append({"target": desc, "goal": goal, "value": v, "compiled": vc, "status": status})
            also = "" if vc is None else f"; compiled {vc:,.0f}"
            lines.append(f"  {status:12s} {desc}: {'-' if v is None else f'{v:,.0f}'}{also} (goal >= {goal:,.0f})")
        step_ratio = speedup(res, net, 2, 512, "part2_ref_step")
        if step_ratio is not None:
            lines.append(f"  (info)       Part 2 at minibatch 512 vs the reference with an optimizer step per sample: "
                         f"{step_ratio:,.0f}")
        lines.append(f"  (targets are defined on 2 CPU cores, float64; this run: {args.device}, {args.dtype}, "
                     f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads)")
        text.append(f"Targets ([64, 64], float64, 2-body, one step per sample; Part 1 with B={p1b})\n" + "\n".join(lines))
    return "\n\n".join(text), {"scaling": scaling, "targets": checks}


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small subset for smoke testing (1-2 minutes)")
    p.add_argument("--json", metavar="PATH", help="write every measurement as JSON to PATH ('-' = stdout)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu); skips cleanly without CUDA")
    p.add_argument("--threads", type=int, help="torch CPU threads, also passed as the config key threads "
                                                "(default: aits's own default; 0 = torch's choice)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--nets", nargs="+", metavar="H1,H2,..", help="hidden layer sizes (default 64,64 256,256,256)")
    p.add_argument("--bodies", nargs="+", type=int, metavar="N", help="numbers of bodies (default 2 3 8 32 128)")
    p.add_argument("--minibatch", nargs="+", type=int, metavar="M", help="Part 2 minibatches (default 64 512 4096 65536)")
    p.add_argument("--part1-batch", nargs="+", type=int, metavar="B", help="live systems in Part 1 (default 64)")
    p.add_argument("--sim-batch", nargs="+", type=int, metavar="B", help="simulated batch sizes (default 1 1024)")
    p.add_argument("--min-time", type=float, help="seconds timed per cell (default 0.5, --quick 0.2)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls per cell (default 3; fewer when slow)")
    p.add_argument("--ref-samples", type=int, help="samples timed in the per-sample reference loop (default 200)")
    p.add_argument("--ref-chunk", type=int, default=50, help="reference-loop samples per optimizer step (default 50)")
    p.add_argument("--ref-max-time", type=float, default=5.0, help="stop the reference loop after this many seconds")
    p.add_argument("--max-pairs", type=int, help="skip cells with B*N^2 above this (default 2**23; memory and time)")
    p.add_argument("--sim-engine", default="auto", choices=("auto", "engine", "lean", "both"),
                   help="simulate with aits.simulation.engine.integrate (auto: when it works, else the lean "
                        "loop), the benchmark's lean loop, or both")
    p.add_argument("--sim-compile", default="on", choices=("on", "off"),
                   help="simulate with the engine's compiled loop (on, default; compiling takes ~5-60 s per cell, "
                        "not timed) or eagerly (off)")
    p.add_argument("--only", nargs="+", choices=("part1", "part2", "simulate"), help="run only these parts")
    p.add_argument("--compile", action="store_true",
                   help="also time Part 1 retrain and Part 2 at M=512 with the config key compile on (each cell "
                        "compiles first: tens of seconds; e.g. with --nets 64,64 --bodies 2 --only part1 part2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override, e.g. --set features.adapter=history (repeatable)")
    args = p.parse_args(argv)
    quick = args.quick
    args.nets = [[int(x) for x in n.split(",")] for n in (args.nets or (["64,64"] if quick else ["64,64", "256,256,256"]))]
    args.bodies = args.bodies or ([2, 8] if quick else [2, 3, 8, 32, 128])
    args.minibatch = args.minibatch or ([64, 512, 4096] if quick else [64, 512, 4096, 65536])
    args.part1_batch = args.part1_batch or [64]
    args.sim_batch = args.sim_batch or [1, 1024]
    args.min_time = args.min_time or (0.2 if quick else 0.5)
    args.ref_samples = args.ref_samples if args.ref_samples is not None else (50 if quick else 200)
    args.ref_chunk = min(args.ref_chunk, max(args.ref_samples, 1))
    if quick:
        args.ref_max_time = min(args.ref_max_time, 2.0)
    args.max_pairs = args.max_pairs or 2**23
    args.only = set(args.only or ("part1", "part2", "simulate"))
    return args


def environment(args) -> dict:
    def git_commit() -> str | None:
        try:
            return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    cpu = None
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), None)
    except OSError:
        pass
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": args.device, "dtype": args.dtype,
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
           "git_commit": git_commit(), "quick": args.quick, "min_time_s": args.min_time, "max_pairs": args.max_pairs,
           "overrides": args.set, "loadavg_start": os.getloadavg()}
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        reason = f"--device {args.device}: CUDA is not available in this torch ({torch.__version__}); skipped"
        print(reason)
        if args.json:
            _write_json(args.json, {"skipped": True, "reason": reason})
        return 0
    clock = Clock(torch.device(args.device))
    env = environment(args)
    res = Results()
    nets = [net_name(h) for h in args.nets]
    t_start = time.perf_counter()

    def emit_for(net: str, hidden: list[int]):
        def emit(kind: str, tag: dict, **values) -> None:
            cell = {"net": net, "hidden": hidden, "kind": kind, **tag, **values}
            res.cells.append(cell)
            done = f"skipped: {values['skipped']}" if values.get("skipped") else \
                f"{fmt_rate(values['rate'])} {values['unit']}/s, {values['s_per_iter'] * 1e3:.3g} ms/it, " \
                f"peak {fmt_mb(values['peak_mb'])} MB"
            print(f"[{time.perf_counter() - t_start:6.1f}s] {net} N={tag['bodies']} {kind} B={tag['batch']}: {done}",
                  file=sys.stderr, flush=True)
        return emit

    print(f"aits benchmark: torch {env['torch']}, {args.device}, {args.dtype}, {env['threads']} threads at start, "
          f"{env['cpu_count']} CPUs, load {env['loadavg_start'][0]:.2f}", file=sys.stderr, flush=True)
    for hidden, net in zip(args.nets, nets):
        emit = emit_for(net, hidden)
        for n in args.bodies:
            if "part1" in args.only:
                for batch in args.part1_batch:
                    part1_cells(args, clock, hidden, n, batch, emit)
            if "part2" in args.only:
                part2_cells(args, clock, hidden, n, emit)
            if "simulate" in args.only:
                simulate_cells(args, clock, hidden, n, emit)
            if args.compile:
                compiled_cells(args, clock, hidden, n, emit)
            gc.collect()
    env["threads"] = torch.get_num_threads()  # the Trainer may have set it (config key threads)
    env["loadavg_end"] = os.getloadavg()
    env["wall_s"] = time.perf_counter() - t_start
    env["process_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        env["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    text, derived = report(args, res, nets)
    header = (f"aits benchmark -- torch {env['torch']}, device {args.device}"
              + (f" ({env['gpu']})" if "gpu" in env else "")
              + f", {args.dtype}, {env['threads']} threads on {env['cpu_count']} CPUs ({env['cpu']}), "
              f"commit {env['git_commit']}, {env['wall_s']:.0f} s, load average {env['loadavg_start'][0]:.2f} -> "
              f"{env['loadavg_end'][0]:.2f}, process max RSS {env['process_maxrss_mb']:.0f} MB")
    spreads = sorted(c["spread"] for c in res.cells if c.get("spread"))
    if spreads:
        env["median_window_spread"] = spreads[len(spreads) // 2]
        header += (f"\nnoise: the rate of a cell's fastest timing window over its slowest, median over cells: "
                   f"{env['median_window_spread']:.2f} (about 1.0-1.1 on a quiet machine)")
    if max(env["loadavg_start"][0], env["loadavg_end"][0]) > (os.cpu_count() or 1) * 0.75 + 0.5:
        header += "\nWARNING: the machine was busy (load average above the CPU count); timings are noisy."
    print(header + "\n\n" + text, file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        _write_json(args.json, {"environment": env, "cells": res.cells, **derived})
    return 0


def _write_json(path: str, data: dict) -> None:
    text = json.dumps(data, indent=1, default=float)
    if path == "-":
        print(text)
    else:
        Path(path).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
