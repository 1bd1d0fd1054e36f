"""Built-in initial-condition generators: the physical ones of :mod:`aits.physics.initial` and
:mod:`aits.physics.scenarios`, and ``from_file``, which reads bodies from a file."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from aits.errors import UserError
from aits.hookspecs import hookimpl
from aits.physics import initial, scenarios
from aits.physics.initial import Bodies, to_centre_of_mass
from aits.registry import Registrar


def from_file(*, G: float, rng: torch.Generator, path: str = "", count: int = 1) -> Bodies:
    """Bodies from a ``.npy`` array of shape (N, 1 + 2D) or (B, N, 1 + 2D), or a ``.csv`` with one row
    per body and columns ``m, x..., v...`` (a header line is allowed), D = 2 or 3."""
    file = Path(path)
    if not path:
        raise UserError("from_file needs a path (system.params.path)")
    if not file.is_file():
        raise UserError(f"initial-condition file not found: {file}")
    table = _read_npy(file) if file.suffix.lower() == ".npy" else _read_csv(file)
    if table.dim() == 2:
        table = table[None]
    if table.dim() != 3 or table.shape[-1] not in (5, 7) or table.shape[1] < 2:
        raise UserError(
            f"{file}: expected shape (N, 1+2D) or (B, N, 1+2D) with D = 2 or 3 and N >= 2, got {tuple(table.shape)}"
        )
    if not torch.isfinite(table).all():
        raise UserError(f"{file}: contains NaN or infinite values")
    dims = (table.shape[-1] - 1) // 2
    mass, pos, vel = table[..., 0], table[..., 1 : 1 + dims], table[..., 1 + dims :]
    if not (mass > 0).all():
        raise UserError(f"{file}: every mass must be > 0")
    pos, vel = to_centre_of_mass(pos, mass), to_centre_of_mass(vel, mass)
    rep = lambda t: t.repeat(count, *([1] * (t.dim() - 1)))  # noqa: E731
    return rep(pos), rep(vel), rep(mass)


def _read_npy(file: Path) -> torch.Tensor:
    import numpy as np

    try:
        return torch.as_tensor(np.load(file, allow_pickle=False), dtype=torch.float64)
    except (ValueError, OSError, TypeError) as exc:
        raise UserError(f"{file}: not a readable numeric .npy array ({exc})") from None


def _read_csv(file: Path) -> torch.Tensor:
    try:
        text = file.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{file}: not a text (CSV) file; use .npy for binary arrays") from None
    except OSError as exc:
        raise UserError(f"{file}: cannot read: {exc.strerror}") from None
    rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].lstrip().startswith("#")]
    try:
        if rows and not _is_number(rows[0][0]):
            rows = rows[1:]
        values = [[float(x) for x in r] for r in rows]
        return torch.tensor(values, dtype=torch.float64)
    except ValueError as exc:
        raise UserError(f"{file}: every row must hold the same number of numeric columns ({exc})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@hookimpl
def aits_register(registrar: Registrar) -> None:
    for generator in (initial.kepler_binary, initial.binary_batch, initial.figure_eight, initial.pythagorean,
                      initial.cluster, from_file, scenarios.hierarchical_triple, scenarios.planetary_system,
                      scenarios.flyby, scenarios.plummer):
        registrar.initial_conditions(generator)
