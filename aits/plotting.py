"""Figures: ``aits simulate`` (|dE/E0| and dt versus time for each policy, and the orbit) and
``aits inspect --plot`` (training curves over the epochs).

Needs matplotlib (the optional extra ``plot``); it is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aits.errors import UserError

if TYPE_CHECKING:
    from aits.simulation.compare import Report

FLOOR = 1e-17  # |dE/E0| of exactly zero, drawn on a log axis


def plot_target(path: Path, name: str) -> Path:
    """The file a figure asked for as ``path`` goes to: ``path/<name>.png`` for a directory,
    ``path.png`` for a name without a suffix, else ``path`` (its suffix names the format)."""
    if path.is_dir():
        return path / f"{name}.png"
    return path if path.suffix else path.with_name(path.name + ".png")


def plot_report(report: Report, path: Path) -> Path:
    """Write a PNG (or any format matplotlib knows from the suffix) of ``report`` to
    :func:`plot_target` of ``path``, and return that file."""
    Figure = _figure_class()
    traced = [e for e in report.entries if e.trace is not None and len(e.trace["time"])]
    if not traced:
        raise UserError("nothing to plot: no policy produced a trajectory")
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    ax_error, ax_dt, ax_orbit = fig.subplots(1, 3)
    for entry in traced:
        t = entry.trace["time"].numpy()
        ax_error.semilogy(t, entry.trace["error"].clamp_min(FLOOR).numpy(), lw=0.8, label=_label(entry))
        ax_dt.semilogy(t, entry.trace["dt"].numpy(), lw=0.8, label=_label(entry))
    if report.target_error is not None:
        ax_error.axhline(report.target_error, color="k", ls="--", lw=0.8, label="target")
    ax_error.set(xlabel="time", ylabel="max |ΔE/E0| per sample", title="energy error")
    ax_dt.set(xlabel="time", ylabel="dt (mean per sample)", title="time step")
    ax_error.legend(fontsize=7)
    ax_dt.legend(fontsize=7)
    _orbit(ax_orbit, min(traced, key=lambda e: e.result.max_error if e.result else float("inf")))
    system = report.system
    params = ", ".join(f"{k}={v}" for k, v in system.params.items())
    target = f", target |ΔE/E0| ≤ {report.target_error:g}" if report.target_error is not None else ""
    fig.suptitle(f"{system.generator}({params}), t = 0…{system.t_end:.4g}, {report.integrator}{target}")
    return _save(fig, plot_target(path, "simulate"))


def plot_training(metrics: list[dict], path: Path, title: str) -> Path:
    """Training curves per epoch: Part 1 accepted / rejected / retrains, Part 2 iterations and pass
    rate, median |dE/E| of Part 1 and median dt / T (the time scale) of both parts."""
    from aits.inspection import metric

    if not metrics:
        raise UserError("nothing to plot: no epoch metrics")
    Figure = _figure_class()
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(16, 4.8), layout="constrained")
    ax_p1, ax_p2, ax_dt = fig.subplots(1, 3)
    epochs = [m["epoch"] for m in metrics]

    def series(ax, path: tuple[str, ...], label: str, **style) -> None:
        pairs = [(e, v) for e, m in zip(epochs, metrics) if (v := metric(m, path)) is not None]
        if pairs:
            ax.plot(*zip(*pairs), label=label, **style)

    for key in ("accepted", "rejected", "retrain_iters"):
        series(ax_p1, ("part1", key), key.replace("_iters", "s"))
    ax_p1.set(xlabel="epoch", ylabel="per epoch", title="Part 1: collect")
    series(ax_p2, ("part2", "iterations"), "iterations", color="C0")
    ax_pass = ax_p2.twinx()
    series(ax_pass, ("part2", "pass_rate"), "pass rate", color="C1")
    ax_p2.set(xlabel="epoch", ylabel="iterations", title="Part 2: generalize")
    ax_pass.set(ylabel="pass rate", ylim=(0, 1.05))
    series(ax_dt, ("part1", "rel_dE_median"), "Part 1 median |ΔE/E|", color="C3")
    ax_ratio = ax_dt.twinx()
    series(ax_ratio, ("part1", "dt_over_tau_median"), "Part 1 median dt/T", color="C0", ls="--")
    series(ax_ratio, ("part2", "dt_over_tau_median"), "Part 2 median dt/T", color="C2", ls="--")
    ax_dt.set(xlabel="epoch", ylabel="median |ΔE/E| per step", yscale="log", title="energy error and step")
    ax_ratio.set(ylabel="median dt / time scale T")
    for ax, twin in ((ax_p1, None), (ax_p2, ax_pass), (ax_dt, ax_ratio)):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles = [h for a in (ax, twin) if a is not None for h in a.get_lines()]
        if handles:
            ax.legend(handles=handles, fontsize=7)
    fig.suptitle(title)
    return _save(fig, plot_target(path, "training"))


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'aits[plot]'") from None
    return Figure


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot write plot {path}: {exc}") from None
    return path


def _label(entry) -> str:
    r = entry.result
    return f"{entry.label} ({entry.spec.parameter}={r.value:.3g}, {r.steps} steps)" if r else entry.label


def _orbit(ax, entry) -> None:
    pos = entry.trace["pos"].numpy()  # (W, N, D)
    for body in range(pos.shape[1]):
        ax.plot(pos[:, body, 0], pos[:, body, 1], lw=0.7, label=f"body {body}")
        ax.plot(pos[-1, body, 0], pos[-1, body, 1], "o", ms=3, color=ax.lines[-1].get_color())
    ax.set(xlabel="x", ylabel="y", title=f"orbit (x-y, from {entry.label})", aspect="equal")
    if pos.shape[1] <= 8:
        ax.legend(fontsize=7)
