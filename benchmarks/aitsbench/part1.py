"""Part 1 cells: a rejection (evaluate + optimise), the real collect loop rejecting or accepting
every step, and with ``--compile`` the compiled collect loop."""

from __future__ import annotations

import dataclasses
from argparse import Namespace

from aits.errors import RunFailed  # collect() raises one (RetrainCapHit) when max_retrain_steps is hit
from aits.training.build import build_trainer
from aits.training.trainer import Trainer

from .builders import ALWAYS, NEVER, build_config
from .measure import Clock, Work, first_call, measure
from .results import Results

ACCEPT_STEPS = 4  # steps per epoch of the accepting collect loop


def cells(args: Namespace, clock: Clock, res: Results, hidden: list[int], n: int, batch: int) -> None:
    tag = {"bodies": n, "batch": batch}
    if batch * n * n > args.max_pairs:
        for kind in ("part1_retrain", "part1_reject", "part1_accept"):
            res.emit(kind, tag, skipped=f"B*N^2 = {batch * n * n} > --max-pairs")
        return
    result = measure(clock, retrain_fn(build_trainer(build_config(args, hidden, n, batch))), args.min_time, args.warmup)
    res.emit("part1_retrain", tag, **result, unit="iterations")

    cap = max(2, min(50, round(0.1 / result["s_per_iter"])))  # calls of ~0.1 s
    reject = reject_fn(build_trainer(build_config(args, hidden, n, batch, max_retrain_steps=cap, **NEVER)), cap)
    res.emit("part1_reject", tag, **measure(clock, reject, args.min_time, args.warmup), unit="iterations")

    tr = build_trainer(build_config(args, hidden, n, batch, steps_per_epoch=ACCEPT_STEPS, **ALWAYS))

    def accept() -> tuple[int, int]:
        m = tr.collect()
        return m["accepted"] // batch, m["accepted"]

    res.emit("part1_accept", tag, **measure(clock, accept, args.min_time, args.warmup), unit="accepted steps")
    if args.compile:
        compiled_cell(args, clock, res, hidden, n, batch)


def compiled_cell(args: Namespace, clock: Clock, res: Results, hidden: list[int], n: int, batch: int) -> None:
    """The collect loop with every step rejected (as ``part1_reject``), config key compile on: each
    iteration one compiled graph; the first call, where compilation happens, is timed apart."""
    cap = 50
    config = dataclasses.replace(build_config(args, hidden, n, batch, max_retrain_steps=cap, **NEVER), compile=True)
    reject = reject_fn(build_trainer(config), cap)
    compile_s = first_call(reject)
    res.emit("part1_retrain_compiled", {"bodies": n, "batch": batch}, **measure(clock, reject, args.min_time, args.warmup),
             compile_s=compile_s, unit="iterations")


def retrain_fn(tr: Trainer) -> Work:
    """One Part 1 rejection on the trainer's live state: evaluate + optimise."""
    s, energy, history = tr.population.systems, tr.population.energy, tr.population.history

    def retrain() -> tuple[int, int]:
        tr.executors.eager.optimise(tr.stepper.evaluate(s, energy, history).losses.mean())
        return 1, 1

    return retrain


def reject_fn(tr: Trainer, cap: int) -> Work:
    """``Trainer.collect()`` with a gate nothing passes, stopped after ``cap`` rejections by the
    trainer's ``max_retrain_steps`` (which must be ``cap``)."""
    def reject() -> tuple[int, int]:
        try:
            tr.collect()
        except RunFailed as exc:
            if "max_retrain_steps" not in str(exc):
                raise
            return cap, cap
        raise RuntimeError("collect() accepted a step through a gate nothing should pass")

    return reject
