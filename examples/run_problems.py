"""Run the reference problem set: learned policies against the best baseline at equal accuracy, over
many realisations of every random problem and several trained policies (training seeds).

    python examples/run_problems.py --checkpoint runs/s0/model.pt runs/s1/model.pt ... [--only NAME ...]
        [--targets 1e-4] [--json results.json] [--jobs 2] [--grid 48] [--problems examples/problems.yaml]
        [--option learned.symmetric=true] [--time-compiled]

Each (problem, realisation, target, policy[, checkpoint]) is one task in a pool of single-threaded
worker processes; the baselines run once per realisation and are shared by every checkpoint. For
each problem the table gives the median and the worst learned / best-baseline step ratio over all
realisations and checkpoints, the median of each checkpoint, and the median wall-time ratio (the
learned policy's wall time at its searched setting over the fastest baseline's at its own).
Without --checkpoint only the baselines run (no ratio).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from aits.config import read_yaml
from aits.errors import UserError
from aits.simulation.compare import Entry, run_searched
from aits.simulation.engine import DEFAULT_MAX_STEPS
from aits.simulation.setup import LEARNED, choose_policies, make_setup

HERE = Path(__file__).parent
PROBLEM_KEYS = {"system", "params", "seed", "seeds", "periods", "time", "skip", "max_steps"}
SLOW_PER_STEP = (LEARNED, "aarseth")  # scheduled first among the runs of one target error


def load_problems(path: Path, only: list[str] | None) -> tuple[dict[str, dict], list[float]]:
    data = read_yaml(path)
    problems = data.get("problems") or {}
    for name, problem in problems.items():
        unknown = set(problem) - PROBLEM_KEYS
        if unknown or "system" not in problem:
            raise UserError(f"{path}: problem {name}: needs 'system'; allowed keys {sorted(PROBLEM_KEYS)}")
    if only:
        missing = [n for n in only if n not in problems]
        if missing:
            raise UserError(f"unknown problem(s) {', '.join(missing)} (choose from: {', '.join(problems)})")
        problems = {n: problems[n] for n in only}
    return problems, [float(t) for t in data.get("targets", [1e-4, 1e-6])]


def realisations(problem: dict[str, Any]) -> list[int]:
    """The initial-condition seeds of a problem: ``seeds: K`` is 0..K-1, else its one ``seed`` (0)."""
    return list(range(int(problem["seeds"]))) if "seeds" in problem else [int(problem.get("seed", 0))]


def run_one(problem: dict[str, Any], seed: int, target: float, policy: str, checkpoint: str | None,
            options: list[str], grid: int, timing_compiled: bool | None) -> dict[str, Any]:
    """One policy on one realisation at one target error: its searched entry as JSON (no trace)."""
    setup, _ = make_setup(problem["system"], problem.get("params"), seed=seed, periods=problem.get("periods"),
                          time=problem.get("time"))
    mine = [o for o in options if o.partition(".")[0] == policy]
    (choice,) = choose_policies([policy], mine, Path(checkpoint) if checkpoint else None)
    entry: Entry = run_searched(setup, choice.spec, target, None, int(problem.get("max_steps", DEFAULT_MAX_STEPS)),
                                int(setup.integrator.order), grid=grid, timing_compiled=timing_compiled)
    return entry.to_json()


def baselines_for(problem: dict[str, Any]) -> list[str]:
    names = [c.spec.name for c in choose_policies(None, None, None)]
    return [n for n in names if n not in problem.get("skip", [])]


def summarise(name: str, target: float, seeds: list[int], checkpoints: list[str],
              done: dict[tuple, dict[str, Any]]) -> dict[str, Any]:
    """Per realisation the best baseline (by steps, and by wall time) and each checkpoint's ratios;
    then the median and worst step ratio over all of them."""
    rows = []
    for seed in seeds:
        base = [e for (n, s, t, p, _), e in done.items() if (n, s, t) == (name, seed, target) and p != LEARNED
                and e["steps"]]
        best = min(base, key=lambda e: e["steps"]) if base else None
        fastest = min(base, key=lambda e: e["wall_time_s"]) if base else None
        row: dict[str, Any] = {"seed": seed, "baselines": {e["policy"]: e["steps"] for e in base},
                               "best_baseline": best["policy"] if best else None, "learned": []}
        for k in range(len(checkpoints)):
            learned = done.get((name, seed, target, LEARNED, k))
            ok = best is not None and learned is not None and learned["steps"]
            row["learned"].append({
                "steps": learned["steps"] if learned else None,
                "step_ratio": learned["steps"] / best["steps"] if ok else None,
                "wall_time_ratio": learned["wall_time_s"] / fastest["wall_time_s"] if ok else None,
                "step_cost_ratio": learned["step_cost_s"] / best["step_cost_s"] if ok else None,
            })
        rows.append(row)
    ratios = [c["step_ratio"] for r in rows for c in r["learned"] if c["step_ratio"] is not None]
    failed = sum(c["step_ratio"] is None for r in rows for c in r["learned"])
    walls = [c["wall_time_ratio"] for r in rows for c in r["learned"] if c["wall_time_ratio"] is not None]
    per_checkpoint = [statistics.median(xs) if xs else None for xs in
                      ([r["learned"][k]["step_ratio"] for r in rows if r["learned"][k]["step_ratio"] is not None]
                       for k in range(len(checkpoints)))]
    return {"problem": name, "target_error": target, "realisations": rows,
            "median_ratio": statistics.median(ratios) if ratios else None, "worst_ratio": max(ratios, default=None),
            "failed": failed, "per_checkpoint_median": per_checkpoint,
            "median_wall_time_ratio": statistics.median(walls) if walls else None,
            "best_baselines": sorted({r["best_baseline"] for r in rows if r["best_baseline"]})}


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def results_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="learned / best baseline at equal accuracy (steps): median and worst over realisations "
                        "and training seeds")
    for column in ("problem", "max |ΔE/E0|", "realisations", "best baseline", "median", "worst", "failed",
                   "median per training seed", "wall-time ratio (median)"):
        table.add_column(column, justify="left" if column in ("problem", "best baseline") else "right")
    for r in results:
        table.add_row(r["problem"], f"{r['target_error']:g}", str(len(r["realisations"])), ", ".join(r["best_baselines"]),
                      fmt(r["median_ratio"]), fmt(r["worst_ratio"]), str(r["failed"]),
                      " ".join(fmt(x) for x in r["per_checkpoint_median"]), fmt(r["median_wall_time_ratio"]))
    return table


def overall(results: list[dict[str, Any]]) -> str:
    ratios = [c["step_ratio"] for r in results for row in r["realisations"] for c in row["learned"]
              if c["step_ratio"] is not None]
    if not ratios:
        return "no learned / best ratios"
    medians = [r["median_ratio"] for r in results if r["median_ratio"] is not None]
    return (f"all {len(ratios)} runs: median {statistics.median(ratios):.3f}, worst {max(ratios):.3f}; "
            f"median of the problems' medians {statistics.median(medians):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", default=[], help="trained policies (model.pt), e.g. 3 seeds")
    parser.add_argument("--problems", type=Path, default=HERE / "problems.yaml")
    parser.add_argument("--only", nargs="+", help="run only these problems")
    parser.add_argument("--targets", nargs="+", type=float, help="target errors (default: the file's)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--grid", type=int, default=48, help="search candidates per factor 2 (default 48)")
    parser.add_argument("--option", action="append", default=[], help="policy option POLICY.KEY=VALUE")
    parser.add_argument("--time-compiled", action="store_true", help="time the searched settings compiled")
    args = parser.parse_args(argv)
    console = Console(stderr=True, highlight=False)
    try:
        problems, targets = load_problems(args.problems, args.only)
        for path in args.checkpoint:
            if not Path(path).is_file():
                raise UserError(f"checkpoint not found: {path}")
        if args.grid < 4:
            raise UserError(f"--grid must be >= 4, got {args.grid}")
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    targets = args.targets or targets
    timing = True if args.time_compiled else None
    tasks = []
    for name, problem in problems.items():
        for seed in realisations(problem):
            for target in targets:
                tasks += [(name, seed, target, p, None, None) for p in baselines_for(problem)]
                tasks += [(name, seed, target, LEARNED, k, c) for k, c in enumerate(args.checkpoint)]
    tasks.sort(key=lambda t: (t[3] not in SLOW_PER_STEP))  # the longest runs first
    start = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.jobs), mp_context=get_context("spawn")) as pool:
        futures = {(name, seed, target, policy, k): pool.submit(run_one, problems[name], seed, target, policy,
                                                                checkpoint, args.option, args.grid, timing)
                   for name, seed, target, policy, k, checkpoint in tasks}
        for (name, seed, target, policy, k), future in futures.items():
            what = f"{name} seed {seed} at {target:g}: {policy}" + ("" if k is None else f" #{k}")
            future.add_done_callback(lambda f, what=what: console.print(
                f"[dim]{time.perf_counter() - start:5.0f} s  done {what}"
                + ("" if f.exception() is None else f" [red]failed: {f.exception()}[/]")))
        done = {key: future.result() for key, future in futures.items()}
    results = [summarise(name, target, realisations(problem), args.checkpoint, done)
               for name, problem in problems.items() for target in sorted(targets, reverse=True)]
    Console(width=max(140, Console().width)).print(results_table(results))
    console.print(overall(results))
    console.print(f"total wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"checkpoints": args.checkpoint, "options": args.option, "grid": args.grid,
                                         "results": results}, indent=2))
        console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
