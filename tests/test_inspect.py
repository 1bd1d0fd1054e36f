"""``aits inspect``: the epoch table, --json unchanged, and --plot training curves as a PNG."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from aits.cli import app

SMALL = ["--set", "system.params.count=4", "--set", "training.max_generalize_iters=3",
         "--set", "training.replay_batch_size=32", "--set", "training.steps_per_epoch=3"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "run"
    result = CliRunner().invoke(app, ["train", "--epochs", "4", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    return out


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_epoch_table_shows_the_last_epochs_as_columns(run):
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    result = invoke("inspect", run, "--last", "2")
    assert result.exit_code == 0, result.output
    assert "last 2 of 4 epochs" in result.output and "P2 pass" in result.output
    rows = [line.strip("│ ").split("│") for line in result.output.splitlines() if line.startswith("│")]
    epoch_rows = [[c.strip() for c in r] for r in rows if len(r) >= 10]
    assert [r[0] for r in epoch_rows] == ["3", "4"]
    assert [int(r[1]) for r in epoch_rows] == [m["part1"]["accepted"] for m in metrics[2:]]
    assert '{"epoch"' not in result.output  # no JSON blob in a cell


def test_json_output_is_the_summary(run):
    summary = json.loads(invoke("inspect", run, "--json").output)
    assert set(summary) == {"kind", "path", "config", "epochs", "last_epoch", "checkpoints", "model"}
    assert summary["epochs"] == 4 and summary["last_epoch"]["epoch"] == 4


def test_plot_writes_a_png_of_the_training_curves(run, tmp_path):
    pytest.importorskip("matplotlib")
    for target in (run, run / "model.pt"):  # a run directory or a checkpoint
        path = tmp_path / f"{target.name}.png"
        result = invoke("inspect", target, "--plot", path)
        assert result.exit_code == 0, result.output
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def test_plot_without_matplotlib_or_metrics_is_one_line(run, tmp_path, monkeypatch):
    result = invoke("collect", "--epochs", "1", "--out", tmp_path / "c", *SMALL)
    assert result.exit_code == 0, result.output
    result = invoke("inspect", tmp_path / "c" / "dataset.pt", "--plot", tmp_path / "d.png")
    assert (result.exit_code, result.output.strip()) == (2, "error: nothing to plot: no epoch metrics")
    for module in ("matplotlib", "matplotlib.figure"):  # as if it were not installed
        monkeypatch.setitem(sys.modules, module, None)
    result = invoke("inspect", run, "--plot", tmp_path / "p.png")
    assert (result.exit_code, result.output.strip()) == (2, "error: --plot needs matplotlib: pip install 'aits[plot]'")
    assert not (tmp_path / "p.png").exists()
