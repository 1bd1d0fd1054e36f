"""Summaries of checkpoints, data sets and run directories (for ``aits inspect``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from aits import checkpoint
from aits.config import read_yaml
from aits.errors import UserError


def inspect(path: Path) -> tuple[dict, list[dict]]:
    """The summary of an aits file or run directory and its per-epoch metrics (none for a data set)."""
    if path.is_dir():
        return describe_run(path)
    data = checkpoint.load(path)
    summary = _checked(path, data)
    return summary, list(data["metrics"]) if summary["kind"] == "checkpoint" else []


def _checked(path: Path, data: dict) -> dict:
    """The summary of a loaded file, or a one-line error when a field is missing or malformed."""
    try:
        return describe_checkpoint(data) if data["kind"] == "checkpoint" else describe_dataset(data)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: malformed aits {data.get('kind', 'file')} (missing or bad field: "
                        f"{type(exc).__name__} {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None


def describe_checkpoint(data: dict) -> dict:
    params = sum(t.numel() for k, t in data["model"].items() if k.startswith("net."))
    return {
        "kind": "checkpoint", "aits_version": data["aits_version"], "format_version": data["format_version"],
        "epoch": data["epoch"], "plugins": data["plugins"], "architecture": data["architecture"],
        "parameters": params, "replay_buffer": sum(int(p["buffer"]["size"]) for p in _populations(data)),
        "last_epoch": data["metrics"][-1] if data["metrics"] else None, "config": data["config"],
    }


def describe_dataset(data: dict) -> dict:
    held = _populations(data)
    dt = torch.cat([p["buffer"]["dt"][: int(p["buffer"]["size"])].flatten() for p in held])
    bodies = data["bodies"] if "populations" not in data else {p["name"]: p["bodies"] for p in held}
    return {
        "kind": "dataset", "aits_version": data["aits_version"], "format_version": data["format_version"],
        "samples": int(dt.numel()), "bodies": bodies, "dims": held[0]["dims"], "features": data["features"],
        "dt_median": float(dt.median()) if dt.numel() else None, "config": data["config"],
    }


def _populations(data: dict) -> list[dict]:
    """The per-population entries (buffer, ...) of a checkpoint or data set: one for a file of a
    single population, whose entries are top-level keys."""
    return data["populations"] if "populations" in data else [data]


def describe_run(path: Path) -> tuple[dict, list[dict]]:
    config = path / "config.yaml"
    if not config.is_file():
        raise UserError(f"{path} is not an aits run directory (no config.yaml)")
    summary: dict = {"kind": "run", "path": str(path), "config": read_yaml(config)}
    metrics_file = path / "metrics.jsonl"
    metrics: list[dict] = []
    if metrics_file.is_file():
        lines = [line for line in metrics_file.read_text().splitlines() if line.strip()]
        try:
            metrics = [json.loads(line) for line in lines]
        except json.JSONDecodeError as exc:
            raise UserError(f"{metrics_file}: not valid JSON lines ({exc.msg} at line {exc.lineno})") from None
        summary.update(epochs=len(metrics), last_epoch=metrics[-1] if metrics else None)
    summary["checkpoints"] = sorted(str(p.relative_to(path)) for p in path.rglob("*.pt"))
    if (path / "model.pt").is_file():
        model = _checked(path / "model.pt", checkpoint.load(path / "model.pt", "checkpoint"))
        summary["model"] = {k: model[k] for k in ("epoch", "plugins", "architecture", "parameters", "replay_buffer")}
    return summary, metrics


EPOCH_COLUMNS = (  # (heading, path in an epoch's metrics, format)
    ("epoch", ("epoch",), "d"),
    ("P1 accepted", ("part1", "accepted"), "d"),
    ("P1 rejected", ("part1", "rejected"), "d"),
    ("P1 retrains", ("part1", "retrain_iters"), "d"),
    ("P1 median |dE/E|", ("part1", "rel_dE_median"), ".2e"),
    ("P1 dt/T", ("part1", "dt_over_tau_median"), ".3g"),
    ("P2 iterations", ("part2", "iterations"), "d"),
    ("P2 converged", ("part2", "converged"), "yes/no"),
    ("P2 pass", ("part2", "pass_rate"), "%"),
    ("P2 dt/T", ("part2", "dt_over_tau_median"), ".3g"),
    ("buffer", ("buffer_size",), "d"),
    ("wall s", ("wall_time_s",), ".2f"),
)


def metric(m: dict, path: tuple[str, ...]) -> object:
    """``m[path[0]][path[1]]...``, or None where the epoch has no such value (e.g. no Part 2)."""
    for key in path:
        if not isinstance(m, dict) or key not in m:
            return None
        m = m[key]
    return m


def epoch_table(metrics: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headings and formatted rows of the epochs' main figures; columns no epoch has are left out."""
    columns = [c for c in EPOCH_COLUMNS if any(metric(m, c[1]) is not None for m in metrics)]
    rows = [[_format(metric(m, path), fmt) for _, path, fmt in columns] for m in metrics]
    return [heading for heading, _, _ in columns], rows


def _format(value: object, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "yes/no":
        return "yes" if value else "no"
    if fmt == "%":
        return "-" if value != value else f"{100 * float(value):.1f}%"
    return format(value, fmt)
