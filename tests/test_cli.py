"""The command line through typer's CliRunner: commands, collect -> generalize, inspect."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aits.cli import app

SMALL = ["--set", "system.params.count=4", "--set", "training.max_generalize_iters=3",
         "--set", "training.replay_batch_size=32", "--set", "training.steps_per_epoch=3"]


@pytest.fixture
def runner():
    return CliRunner()


def test_help_lists_the_six_commands(runner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("train", "collect", "generalize", "inspect", "simulate", "plugins"):
        assert name in result.output


def test_train_writes_a_run_directory(runner, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--epochs", "3", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert "epochs: 3" in (out / "config.yaml").read_text()
    assert (out / "model.pt").is_file()


def test_compiled_train_says_it_compiles_first(runner, tmp_path, monkeypatch):
    import functools

    import torch

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))  # fast
    result = runner.invoke(app, ["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--set", "compile=true", *SMALL])
    assert result.exit_code == 0, result.output
    assert "compile: the first Part 1 and Part 2 iterations build their graphs" in " ".join(result.output.split())


def test_collect_then_generalize_then_inspect(runner, tmp_path):
    collected = tmp_path / "collect"
    result = runner.invoke(app, ["collect", "--epochs", "2", "--out", str(collected), *SMALL])
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (collected / "metrics.jsonl").read_text().splitlines()]
    assert all("part1" in m and "part2" not in m for m in metrics)

    general = tmp_path / "general"
    result = runner.invoke(app, ["generalize", str(collected / "model.pt"), "--data", str(collected / "dataset.pt"),
                                 "--rounds", "2", "--out", str(general)])
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (general / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [3, 4]
    assert all(m["part2"]["samples"] == 2 * 4 * 3 and "part1" not in m for m in metrics)

    result = runner.invoke(app, ["inspect", str(collected / "dataset.pt"), "--json"])
    assert result.exit_code == 0, result.output
    dataset = json.loads(result.output)
    assert dataset["kind"] == "dataset" and dataset["samples"] == 24 and dataset["bodies"] == 2

    result = runner.invoke(app, ["inspect", str(general / "model.pt"), "--json"])
    checkpoint = json.loads(result.output)
    assert checkpoint["epoch"] == 4 and checkpoint["plugins"]["integrator"] == "leapfrog"
    features = 6  # analytic_aarseth: the closest pair's 5 and log(T_A / tau)
    assert checkpoint["parameters"] == (features * 64 + 64) + (64 * 64 + 64) + (64 + 1) + 1  # + the bounded output's base
    assert checkpoint["config"]["training"]["steps_per_epoch"] == 3

    result = runner.invoke(app, ["inspect", str(general)])
    assert result.exit_code == 0 and "epochs" in result.output and "model.pt" in result.output


def test_generalize_refuses_a_data_set_that_does_not_fit_the_model(runner, tmp_path):
    runner.invoke(app, ["collect", "--epochs", "1", "--out", str(tmp_path / "a"), *SMALL])
    runner.invoke(app, ["collect", "--epochs", "1", "--out", str(tmp_path / "b"), *SMALL,
                        "--set", "features.adapter=history", "--set", "features.history_len=2"])
    result = runner.invoke(app, ["generalize", str(tmp_path / "a" / "model.pt"), "--data", str(tmp_path / "b" / "dataset.pt"),
                                 "--out", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "do not fit" in result.output
    assert not (tmp_path / "c").exists()


def test_resume_continues_to_the_configured_epochs(runner, tmp_path):
    out = tmp_path / "run"
    runner.invoke(app, ["train", "--epochs", "2", "--out", str(out), *SMALL])
    result = runner.invoke(app, ["train", "--resume", str(out / "model.pt"), "--epochs", "4"])
    assert result.exit_code == 0, result.output
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_plugins_json_lists_the_built_ins(runner):
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    listed = {(p["kind"], p["name"]) for p in json.loads(result.output)["plugins"]}
    assert {("integrator", "leapfrog"), ("features", "analytic"), ("features", "history"),
            ("loss", "energy_band"), ("initial_conditions", "binary_batch")} <= listed


def test_the_plugins_table_keeps_names_whole_at_80_columns(runner):
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in ("freefall_symmetric", "analytic_aarseth", "initial_conditions", "energy_target"):
        assert any(name in line for line in lines), name


def test_log_records_stay_one_line_off_a_terminal(runner, tmp_path):
    result = runner.invoke(app, ["train", "--epochs", "2", "--out", str(tmp_path / "run"), *SMALL],
                           env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    epoch_lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert epoch_lines, result.output
    assert all(" | part2 " in line and line.endswith(tuple("0123456789")) for line in epoch_lines), epoch_lines
    assert any(line.startswith("policy saved to ") and line.endswith("model.pt") for line in result.output.splitlines())
