"""Interrupting a real ``aits train`` process: SIGINT/SIGTERM save a checkpoint at the next epoch boundary,
say how to resume and exit 130/143; ``--resume`` then reaches exactly the result of an uninterrupted run
with the same seed and config."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import assert_same_state

EPOCHS = 60
CONFIG = ["--set", "system.params.count=8", "--set", "training.max_generalize_iters=3",
          "--set", "training.checkpoint_every=25", "--seed", "7", "--epochs", str(EPOCHS)]
SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM}


def aits(*args: str, cwd: Path) -> subprocess.Popen:
    # One intra-op thread: these tensors are tiny, and on a small shared CPU torch's thread pool makes each
    # epoch ~10x slower while three processes run at once (the results do not depend on it).
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "aits", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def wait_for_epochs(process: subprocess.Popen, metrics: Path, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while len(lines(metrics)) < count:
        assert process.poll() is None, f"aits train ended before epoch {count}: {process.communicate()}"
        assert time.monotonic() < deadline, "aits train did not start its epochs in time"
        time.sleep(0.01)


def finish(process: subprocess.Popen, timeout: float = 120.0) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    return {"rc": process.returncode, "stdout": out, "stderr": err}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted reference run and one run per signal, interrupted after its first epochs and
    then resumed with the command the interrupted run printed."""
    root = tmp_path_factory.mktemp("interrupt")
    reference = aits("train", *CONFIG, "--out", "reference", cwd=root)
    stopped = {name: aits("train", *CONFIG, "--out", name, cwd=root) for name in SIGNALS}
    for name, process in stopped.items():
        wait_for_epochs(process, root / name / "metrics.jsonl", 2)
        process.send_signal(SIGNALS[name])
    results: dict[str, Any] = {"root": root, "interrupted": {name: finish(p) for name, p in stopped.items()}}
    resumed = {}
    for name, result in results["interrupted"].items():
        result["metrics_at_stop"] = lines(root / name / "metrics.jsonl")
        result["files_at_stop"] = sorted(str(p.relative_to(root / name)) for p in (root / name).rglob("*") if p.is_file())
        command = [line for line in result["stderr"].splitlines() if line.startswith("resume with: ")]
        result["resume_command"] = command[0].removeprefix("resume with: ") if command else None
        if command and result["resume_command"].startswith("aits train --resume "):
            resumed[name] = aits(*shlex.split(result["resume_command"])[1:], cwd=root)
    results["reference"] = finish(reference)
    results["resumed"] = {name: finish(p) for name, p in resumed.items()}
    return results


@pytest.mark.parametrize("name", SIGNALS)
def test_signal_saves_a_checkpoint_and_says_how_to_resume(runs: dict[str, Any], name: str) -> None:
    root, result = runs["root"], runs["interrupted"][name]
    signum = SIGNALS[name]
    assert result["rc"] == 128 + signum, result["stderr"]
    assert "Traceback" not in result["stderr"]
    saved_lines = [line for line in result["stderr"].splitlines() if line.startswith("interrupted by signal")]
    assert len(saved_lines) == 1, result["stderr"]
    saved = saved_lines[0].split("checkpoint saved to ", 1)[1]
    assert saved_lines[0].startswith(f"interrupted by signal {int(signum)}: ")
    assert result["resume_command"] == f"aits train --resume {saved}"
    path = root / saved
    assert path.is_file() and path.parent == root / name / "checkpoints"
    data = torch.load(path, weights_only=True)
    epochs_done = len(result["metrics_at_stop"])
    assert data["epoch"] == epochs_done and 2 <= epochs_done < EPOCHS, "stopped at the next epoch boundary, early"
    assert len(data["metrics"]) == epochs_done
    assert "model.pt" not in result["files_at_stop"]  # the final policy is only written by a finished run
    assert not any(f.endswith(".tmp") for f in result["files_at_stop"])


def _strip(metrics: list[str]) -> list[str]:
    """Each epoch's metrics without its wall time, as canonical JSON (NaN compares equal to NaN)."""
    out = []
    for line in metrics:
        m = json.loads(line)
        m.pop("wall_time_s")
        out.append(json.dumps(m, sort_keys=True))
    return out


@pytest.mark.parametrize("name", SIGNALS)
def test_resume_reaches_the_uninterrupted_result(runs: dict[str, Any], name: str) -> None:
    root = runs["root"]
    assert runs["reference"]["rc"] == 0, runs["reference"]["stderr"]
    resumed = runs["resumed"][name]
    assert resumed["rc"] == 0, resumed["stderr"]
    ours, reference = root / name, root / "reference"
    assert _strip(lines(ours / "metrics.jsonl")) == _strip(lines(reference / "metrics.jsonl"))
    assert len(lines(ours / "metrics.jsonl")) == EPOCHS
    a, b = torch.load(ours / "model.pt", weights_only=True), torch.load(reference / "model.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == EPOCHS
    for key in ("model", "optimizer", "rng", "buffer", "systems", "counters", "config"):
        assert_same_state(a[key], b[key], key)
    assert _strip([json.dumps(m) for m in a["metrics"]]) == _strip([json.dumps(m) for m in b["metrics"]])
    # a periodic checkpoint written after the resume equals the reference's
    later = f"checkpoints/epoch-{50:06d}.pt"
    assert_same_state(torch.load(ours / later, weights_only=True)["model"],
                         torch.load(reference / later, weights_only=True)["model"], later)


# --------------------------------------------------------------------------- in-process: every command's hint


SMALL = ["--set", "system.params.count=2", "--set", "training.max_generalize_iters=2", "--set", "model.hidden=[8]"]


def _signal_during_epoch(monkeypatch: pytest.MonkeyPatch, signum: int, times: int = 1, at_call: int = 1) -> None:
    """Deliver ``signum`` to this process ``times`` times inside the ``at_call``-th epoch."""
    from aits.training.trainer import Trainer

    original, calls = Trainer.run_epoch, {"n": 0}

    def run_epoch(self: Trainer, *args: Any, **kwargs: Any) -> dict:
        calls["n"] += 1
        if calls["n"] == at_call:
            for _ in range(times):
                os.kill(os.getpid(), signum)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)


def _invoke(*args: Any) -> Any:
    from typer.testing import CliRunner

    from aits.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", ["collect", "generalize"])
def test_other_commands_print_a_resume_command_that_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.chdir(tmp_path)
    first = _invoke("collect", *SMALL, "--epochs", 2, "--out", "base")
    assert first.exit_code == 0, first.output
    args = {"collect": ["collect", *SMALL, "--epochs", 5, "--out", "stopped"],
            "generalize": ["generalize", "base/model.pt", "--data", "base/dataset.pt", "--rounds", 4,
                           "--set", "training.max_generalize_iters=3", "--out", "stopped"]}[command]
    _signal_during_epoch(monkeypatch, signal.SIGTERM, at_call=2)
    result = _invoke(*args)
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert "Traceback" not in result.output
    hint = [line for line in result.stderr.splitlines() if line.startswith("resume with: ")]
    assert len(hint) == 1, result.stderr
    resume = shlex.split(hint[0].removeprefix("resume with: "))
    saved = Path("stopped/checkpoints") / f"epoch-{(2 if command == 'collect' else 4):06d}.pt"
    if command == "collect":
        assert resume == ["aits", "collect", "--resume", str(saved)]
    else:  # 2 epochs from collect + 2 rounds done: 2 rounds left, with the same --set, in the same run
        assert resume == ["aits", "generalize", str(saved), "--data", "base/dataset.pt", "--rounds", "2",
                          "--set", "training.max_generalize_iters=3", "--out", "stopped"]
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    done = _invoke(*resume[1:])
    assert done.exit_code == 0, done.output
    model = torch.load(tmp_path / "stopped" / "model.pt", weights_only=True)
    assert model["epoch"] == (5 if command == "collect" else 6)
    # one run, one metrics file: every epoch (collect) or round (generalize: epochs 3-6) once, in order
    epochs = [json.loads(line)["epoch"] for line in lines(tmp_path / "stopped" / "metrics.jsonl")]
    assert epochs == (list(range(1, 6)) if command == "collect" else [3, 4, 5, 6])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "stopped"]  # no second run directory


def test_a_second_signal_stops_at_once_with_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _signal_during_epoch(monkeypatch, signal.SIGINT, times=2)
    result = _invoke("train", *SMALL, "--epochs", 3, "--out", "run")
    assert result.exit_code == 130, result.output
    lines_out = [line for line in result.output.splitlines() if line.strip()]
    assert lines_out == ["error: interrupted (no checkpoint written by this interruption)"]
