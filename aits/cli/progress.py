"""Progress reporting: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import math
import time
from typing import Any

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
        parts.append(f"part2 {p['iterations']} it {done} pass {_pct(p['pass_rate'])} dt/T {p['dt_over_tau_median']:.3g}")
    parts.append(f"buffer {m['buffer_size']}")
    parts += [f"{name}: {population_line(m, name)}" for name in populations(m)]
    return " | ".join(parts)


def populations(m: dict) -> list[str]:
    """The names of the populations an epoch's metrics report on one by one (none for one population)."""
    return list(m.get("part1", m.get("part2", {})).get("populations", {}))


def population_line(m: dict, name: str) -> str:
    """A population's share of an epoch: accepted / rejected, median |dE/E|, Part 2 pass rate and dt / T (the adapter's time scale)."""
    out = []
    if "part1" in m:
        p = m["part1"]["populations"][name]
        out.append(f"acc {p['accepted']} rej {p['rejected']} dE {p['rel_dE_median']:.2g}")
    if "part2" in m:
        p = m["part2"]["populations"][name]
        out.append(f"pass {_pct(p['pass_rate'])} dt/T {p['dt_over_tau_median']:.3g}")
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


class ProgressBar:
    """A reporter that shows a rich ``self.progress`` bar while it is entered."""

    progress: Progress

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


class RichReporter(ProgressBar):
    """Epoch bar with live Part 1 retries and Part 2 pass rate."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]epoch"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console,
        )
        self.task = None

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
        status = f"pass {_pct(p2['pass_rate'])} dt/T {p2['dt_over_tau_median']:.3g}" if p2 else epoch_line(metrics)
        status += "".join(f" | {name}: {population_line(metrics, name)}" for name in populations(metrics))
        self.progress.update(self.task, completed=metrics["epoch"], status=status)


def make_reporter(console: Console):
    return RichReporter(console) if console.is_terminal else PlainReporter(console)


# --- aits sweep -----------------------------------------------------------------------------------


def params_text(trial: Any) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())


def trial_line(trial: Any, best: Any | None) -> str:
    """One line per finished trial: its state, value and parameters, and the best so far."""
    value = f" {trial.value:.4g}" if trial.value is not None else ""
    best_text = f" | best {best.value:.4g} (trial {best.number})" if best is not None else ""
    return f"trial {trial.number} {trial.state.name.lower()}{value}{best_text} | {params_text(trial)}"


class PlainSweepProgress:
    """Plain lines (CI, batch logs): one per message and per finished trial."""

    def __init__(self, console) -> None:
        self.console = console

    def __enter__(self) -> PlainSweepProgress:
        return self

    def __exit__(self, *exc: object) -> None: ...

    def say(self, message: str) -> None:
        self.console.print(message, markup=False)

    def trial_started(self, number: int, epochs: int) -> None: ...

    def epoch_finished(self, number: int, epoch: int) -> None: ...

    def trial_finished(self, trial: Any, best: Any | None) -> None:
        self.say(trial_line(trial, best))


class RichSweepProgress(ProgressBar, PlainSweepProgress):
    """A bar over the trials with the running trial's epoch; finished trials print above it."""

    def __init__(self, console, total: int) -> None:
        super().__init__(console)
        self.progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("sweep", total=total, status="")
        self.epochs = 0

    def trial_started(self, number: int, epochs: int) -> None:
        self.epochs = epochs
        self.progress.update(self.task, status=f"trial {number}: epoch 0/{epochs}")

    def epoch_finished(self, number: int, epoch: int) -> None:
        self.progress.update(self.task, status=f"trial {number}: epoch {epoch}/{self.epochs}")

    def trial_finished(self, trial: Any, best: Any | None) -> None:
        super().trial_finished(trial, best)
        self.progress.advance(self.task)
