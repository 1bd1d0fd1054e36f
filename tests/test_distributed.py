"""Several processes: ``torchrun --nproc_per_node=2 -m aits train`` (gloo on the CPU) trains what one
process trains, to rounding; a two-process run resumes, on two processes or one; a killed process
stops the others within seconds and leaves the last checkpoint intact; SIGTERM to torchrun
checkpoints and prints the torchrun command that resumes. The replay buffer's sharing
of samples is checked without processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import assert_same_state

from aits.physics import Systems
from aits.training.buffer import FIELDS, ReplayBuffer
from aits.training.strategy import share

# Three populations of N = 2, 4 and 3 (6 + 2 + 2 systems: one each of the small ones per process); a
# gate and a done band so narrow that Part 1 retrains in most epochs and Part 2 never converges; from
# epoch 2 on Part 2 draws a random subset of the buffers. The free-fall features: the runs must agree
# to 1e-10, which Aarseth's derivatives, summed over other batch shapes, do not quite.
MIXED = ("populations=[{name: binaries, generator: binary_batch, params: {count: 6, e_min: 0.5, e_max: 0.9}},"
         " {name: clusters, generator: cluster, params: {count: 2, n: 4}}, {generator: figure_eight, params: {count: 2}}]")
SMALL = ["--set", "training.max_generalize_iters=4", "--set", "training.E_lower=2e-5",
         "--set", "training.energy_threshold=5e-5", "--set", "model.init_dt_fraction=0.05",
         "--set", "training.replay_batch_size=20", "--set", "training.replay_capacity=600",
         "--set", "training.checkpoint_every=1", "--set", "features.adapter=analytic", "--set", "model.max_correction=2.5"]
CONFIG = ["--set", MIXED, *SMALL, "--epochs", "3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


def torchrun(*args: str, cwd: Path, processes: int = 2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={processes}", "-m", "aits", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def aits(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aits", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(process: subprocess.Popen, done: Callable[[], bool], timeout: float = 90.0) -> None:
    """Until ``done()``, while ``process`` runs."""
    deadline = time.monotonic() + timeout
    while not done():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)


def finish(process: subprocess.Popen, timeout: float = 120.0) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run on one process, the same on two, then the two-process run resumed after its first
    epoch on two processes and on one."""
    root = tmp_path_factory.mktemp("distributed")
    started = [aits("train", *CONFIG, "--out", "one", cwd=root), torchrun("train", *CONFIG, "--out", "two", cwd=root)]
    for process in started:
        rc, err = finish(process)
        assert rc == 0, err
    for name in ("resumed-on-two", "resumed-on-one"):
        shutil.copytree(root / "two", root / name)
    resumed = [torchrun("train", "--resume", "resumed-on-two/checkpoints/epoch-000001.pt", cwd=root),
               aits("train", "--resume", "resumed-on-one/checkpoints/epoch-000001.pt", cwd=root)]
    for process in resumed:
        rc, err = finish(process)
        assert rc == 0, err
    return root


def metrics(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        m.pop("wall_time_s")
        out.append(m)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    ma, mb = metrics(a), metrics(b)
    steps = [0] + [m["optimizer_steps"] for m in ma]
    assert len(ma) == 3 and all(a < b for a, b in zip(steps, steps[1:]))  # every epoch trains
    assert_same_state(ma, mb, "metrics", rel=1e-8)  # |dE/E|, a difference of energies, loses digits
    ca, cb = torch.load(a / "model.pt", weights_only=True), torch.load(b / "model.pt", weights_only=True)
    for key in ("model", "optimizer", "populations", "counters", "epoch"):
        assert_same_state(ca[key], cb[key], key, rel=1e-10)


def test_two_processes_train_what_one_process_trains(runs: Path) -> None:
    assert sum(bool(m["part1"]["rejected"]) for m in metrics(runs / "one")) >= 2  # Part 1 retrained in two epochs
    assert_same_run(runs / "two", runs / "one")
    assert not any(p.name.startswith(".") and p.suffix == ".tmp" for p in (runs / "two").rglob("*"))


@pytest.mark.parametrize("name", ["resumed-on-two", "resumed-on-one"])
def test_a_two_process_run_resumes_on_any_number_of_processes(runs: Path, name: str) -> None:
    assert_same_run(runs / name, runs / "two")


def test_a_killed_process_stops_every_process_and_the_last_checkpoint_stays(tmp_path: Path) -> None:
    launcher = torchrun("train", "--set", "system.params.count=8", *SMALL, "--epochs", "100000", "--out", "run",
                        cwd=tmp_path)
    wait_for(launcher, lambda: len(list((tmp_path / "run" / "checkpoints").glob("epoch-*.pt"))) >= 2)
    os.kill(worker(launcher.pid, rank=1), signal.SIGKILL)
    killed = time.monotonic()
    rc, err = finish(launcher, timeout=60)
    assert rc != 0 and time.monotonic() - killed < 20
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "another of the 2 processes of this run stopped" in line and "last good checkpoint is" in line, err
    last = Path(line.split("last good checkpoint is ")[1].split(" ")[0])
    state = torch.load(tmp_path / last if not last.is_absolute() else last, weights_only=True)
    assert state["epoch"] >= 2 and state["buffer"]["size"] == 32 * state["epoch"]


def test_sigterm_to_torchrun_checkpoints_every_process_and_says_how_to_resume(tmp_path: Path) -> None:
    launcher = torchrun("train", "--set", "system.params.count=8", *SMALL, "--epochs", "100000", "--out", "run",
                        cwd=tmp_path)
    metrics = tmp_path / "run" / "metrics.jsonl"
    wait_for(launcher, lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3)
    launcher.send_signal(signal.SIGTERM)
    _, err = finish(launcher, timeout=60)
    saved = next(line for line in err.splitlines() if line.startswith("interrupted by signal 15: checkpoint saved to "))
    resume = next(line for line in err.splitlines() if line.startswith("resume with: "))
    path = tmp_path / saved.removeprefix("interrupted by signal 15: checkpoint saved to ")
    assert resume == f"resume with: torchrun --standalone --nproc_per_node=2 -m aits train --resume {path.relative_to(tmp_path)}"
    state = torch.load(path, weights_only=True)
    assert len(state["metrics"]) == state["epoch"] >= 3 and state["buffer"]["size"] >= 32 * state["epoch"]
    assert not [line for line in err.splitlines() if line.startswith("error: ")]


def worker(launcher: int, rank: int) -> int:
    """The pid of the torchrun worker of ``rank`` (Linux /proc)."""
    for _ in range(100):
        for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank}")


@pytest.mark.parametrize("command", [["collect", "--epochs", "1"], ["generalize", "model.pt", "--data", "data.pt"],
                                     ["sweep", "sweep.yaml"]])
def test_other_training_commands_refuse_several_processes(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    from typer.testing import CliRunner

    from aits.cli import app

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: aits {command[0]} runs in one process; launch it without torchrun (aits train runs on several)"]


# --------------------------------------------------------------------------- the buffer's shares, in one process


def samples(count: int, first: int) -> tuple[Systems, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` distinguishable samples numbered from ``first`` (2 bodies, 3 dimensions)."""
    x = torch.arange(first, first + count, dtype=torch.float64)
    pos = x[:, None, None].expand(count, 2, 3).clone()
    return Systems(pos, pos + 0.5, x[:, None].expand(count, 2).clone(), pos - 0.5, x), x + 0.25, x[:, None, None] + 0.75, x


@pytest.mark.parametrize("capacity", [7, 50])
@pytest.mark.parametrize("even", [True, False])
def test_buffers_of_several_processes_hold_what_one_buffer_holds(capacity: int, even: bool) -> None:
    """Three processes add their shares of each batch in rank order (the ring wraps, and one batch
    is larger than the capacity; unevenly, the first process records everything and its storage
    grows): together they hold every sample of the one buffer, each in one, in a third of the rows."""
    cpu = torch.device("cpu")
    one = ReplayBuffer(capacity, 2, 3, 1, 1, torch.float64, cpu)
    shards = [ReplayBuffer(capacity, 2, 3, 1, 1, torch.float64, cpu, processes=3) for _ in range(3)]
    assert all(b.data["pos"].shape[0] == -(-capacity // 3) for b in shards)
    first = 0
    for count in (5, 0, 4, 9, 2, 30):
        one.add(*samples(count, first))
        for rank, buffer in enumerate(shards):
            rows = share(count, rank, 3) if even else slice(0 if rank == 0 else count, count)
            buffer.add(*samples(rows.stop - rows.start, first + rows.start), offset=rows.start, total=count)
        first += count
    assert sum(b.owned.long() for b in shards).tolist() == one.owned.long().tolist()
    reference = one.state_dict()
    summed = {name: sum(b.state_dict()[name] for b in shards) for name in FIELDS}
    for name in FIELDS:
        assert torch.equal(summed[name], reference[name]), name
    for buffer in shards:
        assert (buffer.size, buffer.cursor) == (one.size, one.cursor)
        held = buffer.owned.nonzero()[:, 0]
        assert all(torch.equal(x, y) for x, y in zip(buffer.gather(held)[0].tensors(), one.gather(held)[0].tensors()))
        assert buffer.data["pos"].shape[0] <= capacity
    if not even:
        assert shards[0].data["pos"].shape[0] == min(capacity, one.size)  # grew to what it holds
