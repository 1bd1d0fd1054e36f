"""Metric sinks: the built-in jsonl and tensorboard sinks (event files read back with tensorboard's
own reader), a third-party sink through the hook, and the failures a user can meet."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aits import registry
from aits.cli import app
from aits.hookspecs import hookimpl
from aits.interfaces import MetricSink
from aits.sinks import scalars
from aits.training.build import build_trainer
from aits.training.run import RunDir, run_epochs, save_checkpoint
from aits.training.state import trainer_from_checkpoint
from conftest import small_config

SMALL = ["--set", "system.params.count=4", "--set", "training.max_generalize_iters=3",
         "--set", "training.replay_batch_size=32", "--set", "training.steps_per_epoch=3"]


def tensorboard_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the event files under ``path``, read by tensorboard itself."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_scalars_flattens_nested_metrics():
    flat = scalars({"epoch": 3, "part2": {"converged": True, "pass_rate": 0.5, "note": "x"}, "buffer_size": 7})
    assert flat == {"part2/converged": 1.0, "part2/pass_rate": 0.5, "buffer_size": 7.0}


def test_tensorboard_event_files_hold_every_epoch_and_survive_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    config = small_config("training.epochs=3", "logging.sinks=[jsonl, tensorboard]")
    straight = build_trainer(config)
    run_epochs(straight, RunDir(tmp_path), 2)
    half = save_checkpoint(straight, tmp_path / "half.pt")
    run_epochs(straight, RunDir(tmp_path), 3)  # epoch 3, then redone by the resumed run below
    resumed = trainer_from_checkpoint(half)
    run_epochs(resumed, RunDir(tmp_path), 3)

    series = tensorboard_scalars(tmp_path)
    accepted = series["part1/accepted"]
    assert [step for step, _ in accepted] == [1, 2, 3]  # epoch 3 once: the resumed run's
    assert [value for _, value in accepted] == [m["part1"]["accepted"] for m in resumed.metrics]
    pass_rate = [value for _, value in series["part2/pass_rate"]]
    assert pass_rate == pytest.approx([m["part2"]["pass_rate"] for m in resumed.metrics], rel=1e-6)  # float32 events
    assert {"part1/retrain_iters", "part2/iterations", "buffer_size", "wall_time_s"} <= set(series)


class Recorder(MetricSink):
    """Keeps everything it is given (a stand-in for an MLflow or W&B sink)."""

    name = "recorder"
    calls: list[tuple[str, object]] = []

    def start(self, config, first_epoch):
        self.calls.append(("start", (config["seed"], first_epoch, self.run_dir)))

    def epoch(self, metrics):
        self.calls.append(("epoch", metrics["epoch"]))

    def finish(self, summary):
        self.calls.append(("finish", summary))

    def close(self):
        self.calls.append(("close", None))


class Broken(MetricSink):
    """Fails on every epoch."""

    name = "broken"

    def epoch(self, metrics):
        raise ConnectionError("tracker unreachable")


@pytest.fixture
def third_party(monkeypatch):
    """A registry with the built-ins and a plugin registering Recorder and Broken through the hook."""
    module = types.ModuleType("aits_recorder")
    module.aits_register = hookimpl(lambda registrar: (registrar.metric_sink(Recorder), registrar.metric_sink(Broken)))
    monkeypatch.setenv(registry.NO_ENTRY_POINTS_ENV, "1")
    monkeypatch.delenv(registry.STRICT_ENV, raising=False)
    pm, sources, broken = registry.build_plugin_manager()
    pm.register(module, name="aits-recorder")
    reg = registry.collect(pm, {**sources, "aits-recorder": "aits-recorder 1.0"}, broken)
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    Recorder.calls = []
    return reg


def test_a_third_party_sink_gets_config_epochs_and_summary(third_party, tmp_path):
    assert third_party.entries["metric_sink"]["recorder"].source == "aits-recorder 1.0"
    trainer = build_trainer(small_config("seed=5", "logging.sinks=[recorder]"))
    run_epochs(trainer, RunDir(tmp_path), 2)
    kinds = [kind for kind, _ in Recorder.calls]
    assert kinds == ["start", "epoch", "epoch", "finish", "close"]
    assert Recorder.calls[0][1] == (5, 1, tmp_path)
    summary = Recorder.calls[3][1]
    assert summary["epochs"] == 2 and summary["force_evaluations"] == trainer.counters.force_evaluations
    assert summary["part1_accepted"] == sum(m["part1"]["accepted"] for m in trainer.metrics)
    assert not (tmp_path / "metrics.jsonl").exists()  # jsonl was not chosen


def test_a_failing_sink_is_dropped_with_a_warning_and_training_goes_on(third_party, tmp_path):
    trainer = build_trainer(small_config("logging.sinks=[broken, recorder, jsonl]"))
    with pytest.warns(UserWarning, match="metric sink 'broken' failed in epoch .*tracker unreachable"):
        run_epochs(trainer, RunDir(tmp_path), 2)
    assert [kind for kind, _ in Recorder.calls] == ["start", "epoch", "epoch", "finish", "close"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_missing_tensorboard_is_one_line_and_no_run_directory(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--epochs", "1", "--out", str(out), *SMALL,
                                      "--set", "logging.sinks=[jsonl, tensorboard]"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: logging.sinks: tensorboard needs the tensorboard package: "
                                     "pip install 'aits[tensorboard]'")
    assert not out.exists()


def test_unknown_sink_names_the_choices(tmp_path):
    result = CliRunner().invoke(app, ["train", "--epochs", "1", "--out", str(tmp_path / "run"), *SMALL,
                                      "--set", "logging.sinks=[tensorbord]"])
    assert result.exit_code == 2
    assert "unknown metric sink 'tensorbord'; did you mean 'tensorboard'?" in result.output
    assert not (tmp_path / "run").exists()


def test_train_with_tensorboard_writes_event_files_beside_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--epochs", "2", "--out", str(out), *SMALL,
                                      "--set", "logging.sinks=[jsonl, tensorboard]"])
    assert result.exit_code == 0, result.output
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and list(out.glob("events.out.tfevents.*"))
    assert [step for step, _ in tensorboard_scalars(out)["part2/iterations"]] == [1, 2]
