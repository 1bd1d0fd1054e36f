"""Simulation cells: ``aits.simulation.engine.integrate`` with the learned policy (the trainer's
network) or a classical rule; per step one policy call, one leapfrog step and one energy evaluation,
host checks every 128 steps; compiled (``--sim-compile on``, ``CHUNK`` steps per call, compilation
before the timing) or eager."""

from __future__ import annotations

import sys
from argparse import Namespace

import torch

from aits import registry
from aits.simulation.chunks import CHUNK
from aits.simulation.engine import integrate
from aits.simulation.problem import PolicySpec, Setup
from aits.training.build import build_trainer
from aits.training.trainer import Trainer

from .builders import build_config, make_batch
from .measure import Clock, Work, first_call, measure
from .results import Results

CALL_S = 0.2  # aim for integrate() calls of about this long
CHECK_EVERY = 128
VALUES = {"learned": 1.0, "freefall": 0.01}  # each policy's parameter: scale, eta


def cells(args: Namespace, clock: Clock, res: Results, hidden: list[int], n: int) -> None:
    tr = build_trainer(build_config(args, hidden, n, 1))
    for batch in args.sim_batch:
        tag = {"bodies": n, "batch": batch}
        if batch * n * n > args.max_pairs:
            res.emit("simulate", tag, skipped=f"B*N^2 = {batch * n * n} > --max-pairs")
            continue
        unit = "steps" if batch == 1 else "system-steps"
        res.emit("simulate", tag, **step_cell(args, clock, tr, n, batch, "learned"), unit=unit)


def step_cell(args: Namespace, clock: Clock, tr: Trainer, n: int, batch: int, policy: str) -> dict:
    """Steps of ``batch`` systems of ``n`` bodies with ``policy`` (learned: the trainer's network)."""
    work, info = step_work(args, tr, n, batch, policy)
    return {**measure(clock, work, args.min_time, min(args.warmup, 1)), **info}


def step_work(args: Namespace, tr: Trainer, n: int, batch: int, policy: str) -> tuple[Work, dict]:
    """The work of :func:`step_cell`, compiled (with ``--sim-compile on``) and calibrated to calls of
    about ``CALL_S``; and what to record with it (compile_s, engine)."""
    tr.policy.eval()
    s = make_batch(tr, n, batch)
    far = torch.full((batch,), 1e300, dtype=s.time.dtype, device=s.time.device)  # never arrives
    setup = Setup(s, far, tr.gravity, tr.integrator)
    cls = registry.get_registry().get("policy", policy)
    spec = PolicySpec(policy, cls, {"model": tr.policy} if policy == "learned" else {})
    values = torch.full((batch,), VALUES[policy], dtype=s.time.dtype, device=s.time.device)
    compiled = args.sim_compile == "on"
    plan = {"steps": 2 * CHUNK}

    def run() -> tuple[int, int]:
        out = integrate(setup, spec, values, max_steps=plan["steps"], check_every=min(CHECK_EVERY, plan["steps"]),
                        compiled=compiled)
        if out.iterations != plan["steps"]:
            raise RuntimeError(f"integrate() stopped after {out.iterations} of {plan['steps']} steps")
        if compiled and not out.compile_time_s:
            raise RuntimeError("integrate() did not compile")
        return out.iterations, out.iterations * batch

    compile_s = first_call(run) if compiled else 0.0
    if compiled:
        print(f"  simulate {policy} N={n} B={batch}: compiled in {compile_s:.1f} s (not timed)", file=sys.stderr,
              flush=True)
    per_step = first_call(run) / plan["steps"]
    steps = max(CHUNK if compiled else 1, min(51200, round(CALL_S / max(per_step, 1e-7))))
    plan["steps"] = steps if steps < CHECK_EVERY else CHECK_EVERY * round(steps / CHECK_EVERY)
    return run, {"compile_s": compile_s,
                 "engine": f"integrate, {policy}, " + (f"compiled ({CHUNK} steps per call)" if compiled else "eager")}
