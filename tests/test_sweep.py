"""``aits sweep`` on Optuna with SQLite: tiny trials that are normal run directories, a resumed
study, the best config reused by ``aits train``, pruning, and bad sweep files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aits.cli import app
from aits.config import load_config
from aits.sweep.spec import load_spec
from aits.sweep.study import open_study, run_sweep

optuna = pytest.importorskip("optuna")

TINY = ["system.params.count=4", "training.max_generalize_iters=3", "training.replay_batch_size=32",
        "training.steps_per_epoch=3"]


def sweep_file(tmp_path: Path, **changes) -> Path:
    data = {
        "study": "tiny", "trials": 2, "set": TINY + ["training.epochs=2"],
        "objective": {"kind": "step_ratio", "target_error": 1.0e-3, "every": 1,
                      "problems": {"e0.5": {"system": "kepler_binary", "params": {"e": 0.5}, "periods": 1}}},
        "space": {"training.learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
                  "model.activation": {"choices": ["tanh", "silu"]}, "model.hidden": {"choices": [[16], [32, 32]]}},
        **changes,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


class Quiet:
    def say(self, message): ...
    def trial_started(self, number, epochs): ...
    def epoch_finished(self, number, epoch): ...
    def trial_finished(self, trial, best): ...


def test_sweep_on_sqlite_resumes_and_its_best_config_trains_again(tmp_path):
    path, out = sweep_file(tmp_path), tmp_path / "sweep"
    result = invoke("sweep", path, "--out", out)
    assert result.exit_code == 0, result.output
    assert [line.split(" |")[0].rsplit(" ", 1)[0] for line in result.output.splitlines()
            if line.startswith("trial ")] == ["trial 0 complete", "trial 1 complete"]

    result = invoke("sweep", path, "--out", out, "--trials", "3")  # re-running continues the study
    assert result.exit_code == 0, result.output
    assert "2 of 3 trials already finished" in result.output

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    baselines = study.user_attrs["baselines at 0.001"]["e0.5"]
    assert {"aarseth", "fixed", "freefall"} <= set(baselines)
    for trial in study.trials:
        run = out / f"trial-{trial.number:04d}"
        assert Path(trial.user_attrs["run_dir"]) == run.resolve()
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 2 and (run / "model.pt").is_file()
        config = load_config(run / "config.yaml")
        assert config.training.learning_rate == trial.params["training.learning_rate"]
        assert config.model.activation == trial.params["model.activation"]
        assert config.model.hidden == json.loads(trial.params["model.hidden"])  # a list travels as JSON
        ratio = trial.user_attrs["step_ratios"]["e0.5"]
        assert trial.value == pytest.approx(ratio) and 0.3 < ratio < 3  # learned / best classical steps
        assert list(trial.intermediate_values) == [1] and 0.3 < trial.intermediate_values[1] < 3  # every: 1
        assert (run / "checkpoints" / "epoch-000001.pt").is_file()  # the policy the epoch-1 ratio measured
        assert ratio * min(baselines.values()) == pytest.approx(round(ratio * min(baselines.values())))

    best = study.best_trial
    assert f"best: trial {best.number}, value {best.value:.4g}" in result.output
    best_config = out / "best.yaml"
    assert load_config(best_config) == load_config(out / f"trial-{best.number:04d}" / "config.yaml")
    result = invoke("train", "--config", best_config, "--epochs", "1", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert load_config(tmp_path / "again" / "config.yaml").training.learning_rate == best.params["training.learning_rate"]


def test_a_hopeless_trial_is_pruned_and_keeps_a_run_directory(tmp_path):
    path = sweep_file(tmp_path, set=TINY + ["training.epochs=3"],
                      objective={"kind": "metric", "metric": "part1.dt_over_tau_median", "direction": "maximize"},
                      pruner={"kind": "median", "startup_trials": 1, "warmup_epochs": 0},
                      space={"model.init_dt_fraction": {"low": 0.004, "high": 0.04}})
    spec, out = load_spec(path), tmp_path / "sweep"
    out.mkdir()
    study = open_study(spec, out, None)
    study.enqueue_trial({"model.init_dt_fraction": 0.03})
    study.enqueue_trial({"model.init_dt_fraction": 0.005})  # steps 6x smaller than the first trial's
    result = run_sweep(spec, out, None, Quiet())
    first, second = result.study.trials
    assert first.state == optuna.trial.TrialState.COMPLETE and first.value == pytest.approx(
        json.loads((out / "trial-0000" / "metrics.jsonl").read_text().splitlines()[-1])["part1"]["dt_over_tau_median"])
    assert second.state == optuna.trial.TrialState.PRUNED and list(second.intermediate_values) == [1]
    assert len((out / "trial-0001" / "metrics.jsonl").read_text().splitlines()) == 1
    assert (out / "trial-0001" / "model.pt").is_file()
    assert result.best.number == 0


@pytest.mark.parametrize("change, message", [
    ({"space": {"training.learnin_rate": {"low": 1, "high": 2}}},
     "space.training.learnin_rate = 1: unknown config key training.learnin_rate; did you mean"),
    ({"space": {"training.learning_rate": {"low": 1e-2, "high": 1e-3}}}, "space.training.learning_rate: need low < high"),
    ({"objective": {"kind": "metric"}}, "objective kind metric needs metric"),
    ({"trails": 3}, "unknown key(s) trails in the sweep file"),
    ({"study": "../elsewhere"}, "study must be a name of letters, digits"),
])
def test_bad_sweep_files_are_one_line(tmp_path, change, message):
    result = invoke("sweep", sweep_file(tmp_path, **change), "--out", tmp_path / "sweep")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert message in result.output
    assert not (tmp_path / "sweep").exists()


def test_sweep_without_optuna_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    result = invoke("sweep", sweep_file(tmp_path), "--out", tmp_path / "sweep")
    assert (result.exit_code, result.output.strip()) == (2, "error: aits sweep needs optuna: pip install 'aits[optuna]'")


def test_a_bad_storage_url_is_one_line(tmp_path):
    result = invoke("sweep", sweep_file(tmp_path), "--out", tmp_path / "sweep", "--storage", "nosuchdb://x")
    assert result.exit_code == 2 and result.output.startswith("error: cannot open the study storage nosuchdb://x")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "sweep").exists()


def test_the_example_sweep_file_is_valid():
    spec = load_spec(Path(__file__).resolve().parents[1] / "examples" / "sweep.yaml")
    assert spec.objective.kind == "step_ratio" and spec.objective.every == 25 and len(spec.space) == 4


def test_an_interrupted_sweep_says_how_to_continue_and_continues(tmp_path):
    objective = {"kind": "metric", "metric": "part2.pass_rate", "direction": "maximize"}
    path = sweep_file(tmp_path, trials=1, set=TINY + ["training.epochs=100000"], objective=objective)
    command = [sys.executable, "-m", "aits", "sweep", str(path), "--out", str(tmp_path / "sweep")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics, deadline = tmp_path / "sweep" / "trial-0000" / "metrics.jsonl", time.monotonic() + 60
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "the running trial stopped (checkpoint" in err and "re-run the same command to continue the study" in err

    sweep_file(tmp_path, trials=1, set=TINY + ["training.epochs=5"], objective=objective)  # shorter trials from now on
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert len((tmp_path / "sweep" / "trial-0001" / "metrics.jsonl").read_text().splitlines()) == 5
