"""The report: rich tables of the cells, power-law fits of time against M and N (numpy.polyfit),
and the issue-16 targets."""

from __future__ import annotations

from argparse import Namespace

import numpy as np
from rich.console import Console
from rich.table import Table

from . import targets
from .results import Results, fmt_mb, fmt_rate

P1_KINDS = ("part1_retrain", "part1_reject", "part1_accept", "part1_retrain_compiled")


def exponent(points: list[tuple[float, float]]) -> float | None:
    """The fitted exponent b of ``time = a x^b`` (least squares in log-log), None below 2 points."""
    if len(points) < 2:
        return None
    x, y = np.log(np.array(points, dtype=float)).T
    return float(np.polyfit(x, y, 1)[0])


def fmt_exponent(points: list[tuple[float, float]]) -> str:
    """The exponent over all points and, in brackets, between the two largest (the asymptote)."""
    if len(points) < 2:
        return "-"
    points = sorted(points)
    return f"{exponent(points):.2f} ({exponent(points[-2:]):.2f})"


def table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False)
    for i, h in enumerate(headers):
        t.add_column(h, justify="left" if i < 2 else "right")
    for row in rows:
        t.add_row(*row)
    return t


def render(args: Namespace, res: Results, console: Console) -> dict:
    """Print every table; return what the JSON keeps besides the cells (fits, targets)."""
    nets = list(dict.fromkeys(c["net"] for c in res.cells if c["net"] != "targets"))
    derived: dict = {"scaling": [], "targets": []}
    if nets:
        throughput(args, res, nets, console)
        derived["scaling"] = scaling(args, res, nets, console)
    if any(c["net"] == "targets" for c in res.cells):
        checks = targets.evaluate(res)
        rows = [[t.verdict, t.what, "-" if t.value is None else f"{t.value:.3g}", ("<= " if t.at_most else ">= ")
                 + f"{t.goal:g}", t.detail] for t in checks]
        console.print(table(f"Issue-16 targets, each a ratio measured side by side in this run ({args.target_net}, {args.dtype})",
                            ["", "target", "ratio", "goal", "measured"], rows))
        derived["targets"] = [{**t.__dict__, "verdict": t.verdict} for t in checks]
    return derived


def throughput(args: Namespace, res: Results, nets: list[str], console: Console) -> None:
    p1b, mbs, sims = args.part1_batch[0], args.minibatch, args.sim_batch
    cmp_m = 512 if 512 in mbs else mbs[-1]
    rows_a, rows_b, rows_m = [], [], []
    for net in nets:
        for n in args.bodies:
            rows_a.append([net, str(n)] + [fmt_rate(res.rate(net, k, n, p1b)) for k in P1_KINDS]
                          + [fmt_rate(res.rate(net, "simulate", n, b)) for b in sims])
            ratio = res.ratio(net, "part2", n, cmp_m, "part2_ref")
            compiled = res.ratio(net, "part2_compiled", n, cmp_m, "part2_ref")
            rows_b.append([net, str(n)] + [fmt_rate(res.rate(net, "part2", n, m)) for m in mbs]
                          + [fmt_rate(res.rate(net, "part2_compiled", n, cmp_m)), fmt_rate(res.rate(net, "part2_ref", n)),
                             fmt_rate(res.rate(net, "part2_ref_step", n)), "-" if ratio is None else f"{ratio:.0f}",
                             "-" if compiled is None else f"{compiled:.0f}"])
            cells = [("part1_retrain", p1b), ("part1_accept", p1b)] + [("part2", m) for m in mbs] + [("part2_ref", 1)]
            rows_m.append([net, str(n)] + [fmt_mb((res.get(net, k, n, b) or {}).get("peak_mb")) for k, b in cells])
    console.print(table(f"Part 1 (B={p1b} live systems, iterations/s; accept: system-steps/s) and simulate "
                        "(learned policy; steps/s at B=1, system-steps/s above)",
                        ["net", "N", "P1 retrain", "P1 collect rejects", "P1 accept", "P1 compiled"]
                        + [f"sim B={b}" for b in sims], rows_a))
    console.print(table(f"Part 2 samples/s by minibatch M, the per-sample reference loops (B=1), and the ratio "
                        f"of M={cmp_m} to the reference (same run)",
                        ["net", "N"] + [f"M={m}" for m in mbs] + [f"compiled M={cmp_m}", "ref", "ref step each",
                                                                   "ratio", "compiled ratio"], rows_b))
    how = next((c["memory"] for c in res.cells if not c.get("skipped") and "memory" in c), "?")
    console.print(table(f"Peak memory per cell, MB above the cell's start ({how})",
                        ["net", "N", "P1 retrain", "P1 accept"] + [f"P2 M={m}" for m in mbs] + ["P2 ref"], rows_m))


def scaling(args: Namespace, res: Results, nets: list[str], console: Console) -> list[dict]:
    """Part 2 time per iteration against M (per N) and against N (per M), fitted as power laws."""
    fits, rows = [], []
    for net in nets:
        for n in args.bodies:
            points = [(m, c["s_per_iter"]) for m in args.minibatch if (c := res.get(net, "part2", n, m))]
            rows.append([net, f"N={n}"] + [f"{dict(points)[m] * 1e3:.3g}" if m in dict(points) else "-"
                                           for m in args.minibatch] + [fmt_exponent(points), "vs M"])
            fits.append({"net": net, "workload": "part2", "vs": "M", "bodies": n, "points": points,
                         "exponent": exponent(points)})
        for m in args.minibatch:
            points = [(n, c["s_per_iter"]) for n in args.bodies if (c := res.get(net, "part2", n, m))]
            fits.append({"net": net, "workload": "part2", "vs": "N", "batch": m, "points": points,
                         "exponent": exponent(points)})
        rows.append([net, "exponent vs N"] + [fmt_exponent(f["points"]) for f in fits[-len(args.minibatch):]] + ["", ""])
    console.print(table("Part 2 ms per iteration; fitted exponent b of time ~ x^b over all points (in brackets: "
                        "between the two largest)", ["net", ""] + [f"M={m}" for m in args.minibatch]
                        + ["exponent", ""], rows))
    return fits
