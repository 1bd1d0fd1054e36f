"""Run the reference problem set: the learned policy against the best baseline at equal accuracy.

    python examples/run_problems.py --checkpoint runs/train-.../model.pt [--only kepler_e0.9 ...]
        [--targets 1e-4 1e-6] [--json results.json] [--jobs 2] [--problems examples/problems.yaml]

Each (problem, target, policy) runs as its own task in a pool of single-threaded worker processes.
Without --checkpoint only the baselines run (no ratio).
"""

from __future__ import annotations

import argparse
import json
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
from aits.simulation.compare import Report, compare
from aits.simulation.setup import LEARNED, choose_policies, make_setup

HERE = Path(__file__).parent
PROBLEM_KEYS = {"system", "params", "seed", "periods", "time", "skip"}
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


def run_one(name: str, problem: dict[str, Any], target: float, policy: str, checkpoint: str | None):
    """One policy on one problem at one target error: its report entries (traces dropped)."""
    setup, info = make_setup(problem["system"], problem.get("params"), seed=problem.get("seed", 0),
                             periods=problem.get("periods"), time=problem.get("time"))
    choices = choose_policies([policy], None, Path(checkpoint) if checkpoint and policy == LEARNED else None)
    report = compare(setup, info, choices, target_error=target)
    for entry in report.entries:
        entry.trace = None
    return info, report.integrator, report.entries


def policies_for(problem: dict[str, Any], checkpoint: str | None) -> list[str]:
    names = [c.spec.name for c in choose_policies(None, None, Path(checkpoint) if checkpoint else None)]
    return [n for n in names if n not in problem.get("skip", [])]


def summary(name: str, target: float, reports: list) -> dict[str, Any]:
    info, integrator = reports[0][0], reports[0][1]
    report = Report(info, integrator, target, [e for _, _, entries in reports for e in entries])
    steps = {e.label: e.result.steps if e.result else None for e in report.entries}
    return {"problem": name, "target_error": target, "t_end": info.t_end, "steps": steps,
            "comparison": report.comparison(), "report": report.to_json()}


def results_table(results: list[dict[str, Any]]) -> Table:
    labels = sorted({label for r in results for label in r["steps"] if label != f"{LEARNED} (unscaled)"},
                    key=lambda s: (s.startswith(LEARNED), s))
    table = Table(title="learned vs best baseline at equal accuracy (steps)")
    for column in ["problem", "max |ΔE/E0|", *labels, "best baseline", "learned / best"]:
        table.add_column(column, justify="left" if column in ("problem", "best baseline") else "right")
    for r in results:
        c = r["comparison"] or {}
        cells = [f"{r['steps'][label]:,}" if r["steps"].get(label) else "-" for label in labels]
        ratio = f"{c['step_ratio']:.3f}" if c else "-"
        table.add_row(r["problem"], f"{r['target_error']:g}", *cells, c.get("best_baseline", "-"), ratio)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="trained policy (model.pt from aits train)")
    parser.add_argument("--problems", type=Path, default=HERE / "problems.yaml")
    parser.add_argument("--only", nargs="+", help="run only these problems")
    parser.add_argument("--targets", nargs="+", type=float, help="target errors (default: the file's)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)
    console = Console(stderr=True, highlight=False)
    try:
        problems, targets = load_problems(args.problems, args.only)
        if args.checkpoint and not Path(args.checkpoint).is_file():
            raise UserError(f"checkpoint not found: {args.checkpoint}")
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    checkpoint = args.checkpoint
    tasks = [(name, problem, target, policy) for name, problem in problems.items()
             for target in (args.targets or targets) for policy in policies_for(problem, checkpoint)]
    tasks.sort(key=lambda t: (t[2], t[3] not in SLOW_PER_STEP))  # the longest runs first
    start = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.jobs), mp_context=get_context("spawn")) as pool:
        futures = {(name, target, policy): pool.submit(run_one, name, problem, target, policy, checkpoint)
                   for name, problem, target, policy in tasks}
        for (name, target, policy), future in futures.items():
            future.add_done_callback(lambda f, what=f"{name} at {target:g}: {policy}": console.print(
                f"[dim]{time.perf_counter() - start:5.0f} s  done {what}"
                + ("" if f.exception() is None else f" [red]failed: {f.exception()}[/]")))
        done = {key: future.result() for key, future in futures.items()}
    results = [summary(name, target, [v for (n, t, _), v in done.items() if (n, t) == (name, target)])
               for name in problems for target in sorted(args.targets or targets, reverse=True)]
    Console(width=max(120, Console().width)).print(results_table(results))
    console.print(f"total wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
