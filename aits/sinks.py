"""Metric sinks of a training run: chosen by ``logging.sinks``, fed by :func:`aits.training.run.run_epochs`.

Helpers for sink authors: :func:`scalars` flattens an epoch's metrics to ``{"part1/accepted": 12.0, ...}``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aits import registry
from aits.interfaces import MetricSink

if TYPE_CHECKING:
    from aits.training.trainer import Trainer


def resolve(names: list[str]) -> list[type[MetricSink]]:
    """The registered sink classes for ``names``, each checked to work here (else a UserError)."""
    plugins = registry.get_registry()
    classes = [plugins.get("metric_sink", name) for name in names]
    for cls in classes:
        cls.check()
    return classes


def scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number of a nested metrics dict under a slash-joined key (booleans as 0/1), ``epoch`` left out."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalars(value, f"{name}/"))
        elif isinstance(value, (bool, int, float)) and name != "epoch":
            out[name] = float(value)
    return out


def summary(trainer: Trainer) -> dict[str, Any]:
    """What a run did in all: totals over its epochs and the last epoch's Part 2 figures."""
    metrics = trainer.metrics
    p1 = [m["part1"] for m in metrics if "part1" in m]
    p2 = [m["part2"] for m in metrics if "part2" in m]
    out: dict[str, Any] = {"epochs": trainer.epoch}
    if p1:
        out.update(part1_accepted=sum(p["accepted"] for p in p1), part1_rejected=sum(p["rejected"] for p in p1),
                   part1_retrain_iters=sum(p["retrain_iters"] for p in p1))
    if p2:
        out.update(part2_epochs=len(p2), part2_converged_epochs=sum(bool(p["converged"]) for p in p2),
                   part2_final_pass_rate=p2[-1]["pass_rate"], dt_over_tau_median=p2[-1]["dt_over_tau_median"])
    out.update(buffer_size=metrics[-1]["buffer_size"] if metrics else 0,
               force_evaluations=trainer.counters.force_evaluations,
               wall_time_s=sum(m["wall_time_s"] for m in metrics))
    return out


class Sinks:
    """Fans each call out to every sink. A sink that raises is warned about and dropped for the rest
    of the run, so that a tracker's failure does not stop training (``AITS_STRICT_PLUGINS=1``: raise)."""

    def __init__(self, sinks: list[MetricSink]) -> None:
        self.sinks = list(sinks)

    def _call(self, method: str, *args: Any) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as exc:
                if os.environ.get(registry.STRICT_ENV, "") not in ("", "0"):
                    raise
                self.sinks.remove(sink)
                warnings.warn(f"metric sink {sink.name!r} failed in {method} ({type(exc).__name__}: {exc}); "
                              "it is dropped for the rest of this run", stacklevel=3)

    def epoch(self, metrics: dict[str, Any]) -> None:
        self._call("epoch", metrics)

    def finish(self, summary: dict[str, Any]) -> None:
        self._call("finish", summary)


@contextmanager
def open_sinks(trainer: Trainer, run_dir: Path) -> Iterator[Sinks]:
    """The run's sinks, started with its config and closed on the way out (also on errors)."""
    sinks = Sinks([cls(run_dir) for cls in resolve(trainer.config.logging.sinks)])
    try:
        sinks._call("start", trainer.config.to_dict(), trainer.epoch + 1)
        yield sinks
    finally:
        for sink in sinks.sinks:
            sink.close()
