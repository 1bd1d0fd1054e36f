"""Progress reporting: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

UNWRAPPED = 1_000_000  # the width of a console off a terminal: a log record is never broken across lines


def make_console(stderr: bool = True) -> Console:
    """A rich console; off a terminal (a file, a pipe, CI) it never wraps a line, whatever the width
    the environment claims, so that every log record stays one line."""
    console = Console(stderr=stderr, highlight=False)
    return console if console.is_terminal else Console(stderr=stderr, highlight=False, width=UNWRAPPED)


def epoch_line(m: dict) -> str:
    """One line summarising an epoch's metrics."""
    parts = [f"epoch {m['epoch']}"]
    if "part1" in m:
        p = m["part1"]
        parts.append(f"part1 accepted {p['accepted']} rejected {p['rejected']} retrain {p['retrain_iters']}")
    if "part2" in m:
        p = m["part2"]
        done = "converged" if p["converged"] else "not converged"
        parts.append(f"part2 {p['iterations']} it {done} pass {_pct(p['pass_rate'])} dt/tau {p['dt_over_tau_median']:.3g}")
    parts.append(f"buffer {m['buffer_size']}")
    parts += [f"{name}: {population_line(m, name)}" for name in populations(m)]
    return " | ".join(parts)


def populations(m: dict) -> list[str]:
    """The names of the populations an epoch's metrics report on one by one (none for one population)."""
    return list(m.get("part1", m.get("part2", {})).get("populations", {}))


def population_line(m: dict, name: str) -> str:
    """A population's share of an epoch: accepted / rejected, median |dE/E|, Part 2 pass rate and dt/tau."""
    out = []
    if "part1" in m:
        p = m["part1"]["populations"][name]
        out.append(f"acc {p['accepted']} rej {p['rejected']} dE {p['rel_dE_median']:.2g}")
    if "part2" in m:
        p = m["part2"]["populations"][name]
        out.append(f"pass {_pct(p['pass_rate'])} dt/tau {p['dt_over_tau_median']:.3g}")
    return " ".join(out)


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


class PlainReporter:
    """A log line every ``every_s`` seconds and at the last epoch (for CI and batch logs)."""

    def __init__(self, console: Console, every_s: float = 5.0) -> None:
        self.console, self.every_s, self.last = console, every_s, -math.inf
        self.total = 0

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: object) -> None: ...

    def epoch_started(self, epoch: int, total: int) -> None:
        self.total = total

    def part1_progress(self, accepted: int, target: int, retrain_iters: int) -> None: ...

    def part2_progress(self, iteration: int, pass_rate: float) -> None: ...

    def epoch_finished(self, metrics: dict) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s or metrics["epoch"] >= self.total:
            self.last = now
            self.console.print(epoch_line(metrics))


class RichReporter:
    """Epoch bar with live Part 1 retries and Part 2 pass rate."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]epoch"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console,
        )
        self.task = None

    def __enter__(self) -> RichReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def epoch_started(self, epoch: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("train", total=total, completed=epoch - 1, status="")
        self.progress.update(self.task, total=total)

    def part1_progress(self, accepted: int, target: int, retrain_iters: int) -> None:
        self.progress.update(self.task, status=f"part 1: {accepted}/{target} accepted, {retrain_iters} retrains")

    def part2_progress(self, iteration: int, pass_rate: float) -> None:
        self.progress.update(self.task, status=f"part 2: iteration {iteration}, pass {_pct(pass_rate)}")

    def epoch_finished(self, metrics: dict) -> None:
        p2 = metrics.get("part2")
        status = f"pass {_pct(p2['pass_rate'])} dt/tau {p2['dt_over_tau_median']:.3g}" if p2 else epoch_line(metrics)
        status += "".join(f" | {name}: {population_line(metrics, name)}" for name in populations(metrics))
        self.progress.update(self.task, completed=metrics["epoch"], status=status)


def make_reporter(console: Console):
    return RichReporter(console) if console.is_terminal else PlainReporter(console)
