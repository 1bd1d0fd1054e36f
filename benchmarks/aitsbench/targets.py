"""The issue-16 targets, each measured against its reference in the same run ([64, 64], float64).

The reference for the Part 2 rates and memory is the same trainer with the leapfrog differentiated
by autograd through the pair tensors (:class:`~.builders.AutogradLeapfrog`), the gradient path before
the closed form; for the compiled Part 2 at N = 2 the per-sample reference loop; for the learned
step the free-fall rule's step, both compiled.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass

from aits.training.build import build_trainer

from .builders import AutogradLeapfrog, NEVER, build_config, filled_trainer
from .measure import Clock
from .part2 import generalize_cell, reference_loop
from .results import Results, fmt_mb, fmt_rate
from .simulate import step_cell

NET = [64, 64]
M = 512
MEMORY = (32, 4096)  # N, M of the peak-memory target
SIM_BODIES = 16


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
    """Every cell the targets need, under the net name ``targets``."""
    res.use_net(NET, "targets")
    for n in (2, 8, 32):
        tag = {"bodies": n, "batch": M}
        res.emit("part2", tag, **generalize_cell(args, clock, NET, n, M), unit="samples")
        res.emit("part2_autograd", tag, **generalize_cell(args, clock, NET, n, M, integrator=AutogradLeapfrog()),
                 unit="samples")
        res.emit("part2_compiled", tag, **generalize_cell(args, clock, NET, n, M, compiled=True), unit="samples")
    n, m = MEMORY
    for kind, integrator in (("part2", None), ("part2_autograd", AutogradLeapfrog())):
        res.emit(kind, {"bodies": n, "batch": m}, **generalize_cell(args, clock, NET, n, m, integrator=integrator),
                 unit="samples")
    tr = filled_trainer(build_config(args, NET, 2, 1, replay_capacity=args.ref_chunk, **NEVER), 2, args.ref_chunk)
    res.emit("part2_ref", {"bodies": 2, "batch": 1}, **reference_loop(args, clock, tr, "accumulate"), unit="samples")
    tr = build_trainer(build_config(args, NET, SIM_BODIES, 1))
    for policy in ("learned", "freefall"):
        res.emit(f"simulate_{policy}", {"bodies": SIM_BODIES, "batch": 1},
                 **step_cell(args, clock, tr, SIM_BODIES, 1, policy), unit="steps")


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
