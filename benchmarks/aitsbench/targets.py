"""The issue-16 targets, each measured against its reference in the same run (float64; the network
[64, 64] as in the issue, or ``--target-net``).

The reference for the Part 2 rates and memory is the same trainer with the leapfrog differentiated
by autograd through the pair tensors (:class:`~.builders.AutogradLeapfrog`), the gradient path before
the closed form; for the compiled Part 2 at N = 2 the per-sample reference loop; for the learned
step the free-fall rule's step, both compiled. The cells of a comparison are measured in turn,
three rounds, and each keeps its best round: on a shared machine a busy spell then hits both sides.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass

from aits.training.build import build_trainer

from .builders import AutogradLeapfrog, NEVER, build_config, filled_trainer
from .measure import Clock, Work, measure
from .part2 import generalize_work, reference_loop
from .results import Results, fmt_mb, fmt_rate
from .simulate import step_work

M = 512
MEMORY = (32, 4096)  # N, M of the peak-memory target
SIM_BODIES = 16
ROUNDS = 3


@dataclass(frozen=True)
class Target:
    what: str
    value: float | None  # the measured ratio
    goal: float
    at_most: bool = False  # the goal is an upper bound
    detail: str = ""

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        return "MET" if (self.value <= self.goal if self.at_most else self.value >= self.goal) else "MISSED"


def cells(args: Namespace, clock: Clock, res: Results) -> None:
    """Every cell the targets need, under the net name ``targets``; the cells of each comparison
    measured in turn, ``ROUNDS`` times (see :func:`interleaved`)."""
    net = args.target_net
    res.use_net(net, "targets")
    for n in (2, 8, 32):
        works = {"part2": generalize_work(args, net, n, M)[0],
                 "part2_autograd": generalize_work(args, net, n, M, integrator=AutogradLeapfrog())[0],
                 "part2_compiled": generalize_work(args, net, n, M, compiled=True)[0]}
        runs = {kind: timed(args, clock, work, "samples") for kind, work in works.items()}
        interleaved(res, {"bodies": n, "batch": M}, runs)
    tr = filled_trainer(build_config(args, net, 2, 1, replay_capacity=args.ref_chunk, **NEVER), 2, args.ref_chunk)
    interleaved(res, {"bodies": 2, "batch": 1},
                {"part2_ref": lambda: {**reference_loop(args, clock, tr, "accumulate"), "unit": "samples"}})
    n, m = MEMORY
    works = {"part2": generalize_work(args, net, n, m)[0],
             "part2_autograd": generalize_work(args, net, n, m, integrator=AutogradLeapfrog())[0]}
    interleaved(res, {"bodies": n, "batch": m}, {k: timed(args, clock, w, "samples") for k, w in works.items()})
    tr = build_trainer(build_config(args, net, SIM_BODIES, 1))
    works = {f"simulate_{policy}": step_work(args, tr, SIM_BODIES, 1, policy)[0] for policy in ("learned", "freefall")}
    interleaved(res, {"bodies": SIM_BODIES, "batch": 1}, {k: timed(args, clock, w, "steps") for k, w in works.items()})


def timed(args: Namespace, clock: Clock, work: Work, unit: str) -> Callable[[], dict]:
    return lambda: {**measure(clock, work, args.min_time, 1), "unit": unit}


def interleaved(res: Results, tag: dict, runs: dict[str, Callable[[], dict]]) -> None:
    """Each measurement ``ROUNDS`` times, in turn, so that a busy spell of the machine hits them
    alike; kept: the round with the highest rate, with the largest peak memory of all rounds."""
    best: dict[str, dict] = {}
    for _ in range(ROUNDS):
        for kind, run in runs.items():
            r = run()
            peak = max(r["peak_mb"], best[kind]["peak_mb"]) if kind in best else r["peak_mb"]
            if kind not in best or r["rate"] > best[kind]["rate"]:
                best[kind] = r
            best[kind]["peak_mb"] = peak
    for kind, r in best.items():
        res.emit(kind, tag, **r, rounds=ROUNDS)


def evaluate(res: Results) -> list[Target]:
    net = "targets"
    out = []
    for n, goal, old in ((32, 10.0, "2.0k"), (8, 3.0, "23.1k"), (2, 1.0, "71.5k")):
        eager = res.ratio(net, "part2", n, M, "part2_autograd", M)
        compiled = res.ratio(net, "part2_compiled", n, M, "part2_autograd", M)
        best = max((x for x in (eager, compiled) if x is not None), default=None)
        out.append(Target(f"Part 2 at N={n}, M={M}: samples/s over the autograd path", best, goal,
                          detail=f"eager {fmt_ratio(eager)}, compiled {fmt_ratio(compiled)}; "
                                 f"{fmt_rate(res.rate(net, 'part2', n, M))} eager, "
                                 f"{fmt_rate(res.rate(net, 'part2_compiled', n, M))} compiled, "
                                 f"{fmt_rate(res.rate(net, 'part2_autograd', n, M))} autograd (issue: {old})"))
    n, m = MEMORY
    new, old = res.get(net, "part2", n, m), res.get(net, "part2_autograd", n, m)
    ratio = new["peak_mb"] / old["peak_mb"] if new and old and old["peak_mb"] > 0 else None
    out.append(Target(f"peak memory of a Part 2 iteration at N={n}, M={m} over the autograd path's", ratio, 0.5,
                      at_most=True, detail=f"{fmt_mb(new and new['peak_mb'])} vs {fmt_mb(old and old['peak_mb'])} MB "
                                           f"(issue: 289 MB; goal also <= 145 MB)"))
    ratio = res.ratio(net, "part2_compiled", 2, M, "part2_ref", 1)
    out.append(Target(f"compiled Part 2 at N=2, M={M} over the per-sample reference loop", ratio, 1000.0,
                      detail=f"{fmt_rate(res.rate(net, 'part2_compiled', 2, M))} vs "
                             f"{fmt_rate(res.rate(net, 'part2_ref', 2, 1))} samples/s (issue: 538x)"))
    learned, freefall = (res.get(net, f"simulate_{p}", SIM_BODIES, 1) for p in ("learned", "freefall"))
    ratio = learned["s_per_iter"] / freefall["s_per_iter"] if learned and freefall else None
    out.append(Target(f"simulate at N={SIM_BODIES}, compiled: one learned step over one free-fall step", ratio, 1.3,
                      at_most=True, detail=f"{learned and learned['s_per_iter'] * 1e6:.1f} vs "
                                           f"{freefall and freefall['s_per_iter'] * 1e6:.1f} us per step"
                      if learned and freefall else ""))
    return out


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}x"
