"""Figures for ``aits simulate``: |dE/E0| and dt versus time for each policy, and the orbit.

Needs matplotlib (the optional extra ``plot``); it is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aits.errors import UserError

if TYPE_CHECKING:
    from aits.simulation.compare import Report

FLOOR = 1e-17  # |dE/E0| of exactly zero, drawn on a log axis


def plot_report(report: Report, path: Path) -> Path:
    """Write a PNG (or any format matplotlib knows from the suffix) of ``report`` to ``path``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'aits[plot]'") from None
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
