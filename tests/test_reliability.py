"""Reliability (issue 12): every failure one line with the right exit code, hostile YAML refused
quickly, checkpoints that hold only their content and are verified on load, atomic writes with the
umask's mode, write failures that keep the last good checkpoint, and one process per run directory.
Signals, locks and write failures are tested on real ``aits`` processes."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from aits import checkpoint
from aits.cli import app
from aits.errors import classify
from test_errors import assert_one_line_error, sealed

SMALL = ["--set", "system.params.count=2", "--set", "training.max_generalize_iters=2", "--set", "model.hidden=[8]",
         "--set", "training.replay_batch_size=16"]
# built-ins only: another plugin installed here must not add lines to what these tests read
ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "AITS_NO_ENTRY_POINTS": "1"}


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def aits(*args: Any, cwd: Path, env: dict | None = None, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aits", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or ENV, **kwargs)


def finish(process: subprocess.Popen, timeout: float = 120.0) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, err


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run with the default replay capacity (100,000) and a checkpoint after epoch 1."""
    root = tmp_path_factory.mktemp("trained")
    result = invoke("train", *SMALL, "--epochs", 2, "--set", "training.checkpoint_every=1", "--out", root / "run")
    assert result.exit_code == 0, result.output
    return root / "run"


# --------------------------------------------------------------------------- one line for every known cause


@pytest.mark.parametrize(("exc", "code", "needle"), [
    (OSError(errno.ENOSPC, "No space left on device", "x.pt"), 1, "x.pt: No space left on device"),
    (OSError(errno.EFBIG, "File too large"), 1, "File too large"),
    (PermissionError(errno.EACCES, "Permission denied", "out"), 1, "out: Permission denied"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "a" * 300), 2, "File name too long"),
    (MemoryError(), 1, "out of memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
                  "to allocate 8000000000000 bytes. Error code 12 (Cannot allocate memory)"), 1,
     "out of memory (RuntimeError: tried to allocate 8000000000000 bytes)"),
    (RecursionError("maximum recursion depth exceeded"), 2, "nested too deeply"),
    (OverflowError("int too large to convert"), 2, "int too large to convert"),
])
def test_known_causes_are_classified_as_input_or_environment(exc: Exception, code: int, needle: str) -> None:
    message, got = classify(exc)
    assert got == code and needle in message and len(message) < 300 and "\n" not in message


def test_a_bug_is_not_classified() -> None:
    assert classify(ValueError("a bug")) is None and classify(KeyError("x")) is None


def test_any_command_turns_an_escaping_error_into_one_line_and_debug_shows_it(cwd: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(*args: Any, **kwargs: Any) -> None:
        raise MemoryError

    monkeypatch.setattr("aits.inspection.inspect", exhausted)
    (cwd / "x.pt").write_bytes(b"")
    assert_one_line_error(invoke("inspect", "x.pt"), "out of memory (MemoryError", code=1)
    assert isinstance(invoke("--debug", "inspect", "x.pt").exception, MemoryError)


def test_a_file_name_too_long_is_one_line(cwd: Path) -> None:
    line = assert_one_line_error(invoke("inspect", "a" * 300 + ".pt"), "File name too long", code=2)
    assert len(line) < 200


@pytest.mark.parametrize(("args", "needle"), [
    (["simulate", "--device", "tpu"], "unknown device 'tpu' (use cpu, cuda, cuda:N or auto)"),
    (["simulate", "--target-error", "inf"], "--target-error must be a finite number, got inf"),
    (["simulate", "--time", "inf"], "--time must be a finite number, got inf"),
    (["simulate", "--periods", "nan"], "--periods must be a finite number, got nan"),
    (["train", "--set", f"training.steps_per_epoch={10**20}"], "training.steps_per_epoch is out of range"),
])
def test_bad_numbers_and_devices_are_one_line(cwd: Path, args: list[str], needle: str) -> None:
    assert_one_line_error(invoke(*args), needle, code=2)
    assert not (cwd / "runs").exists()


# --------------------------------------------------------------------------- hostile YAML


def _alias_bomb(levels: int = 7) -> str:
    """Each level a list of ten aliases of the one before: 10**levels values once expanded."""
    lines = ["l0: &l0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ntraining: {{epochs: *l{levels - 1}}}\n"


YAML_FILES = {
    "alias_bomb": (_alias_bomb(), "expands to more than 100,000 values (through aliases)"),
    "deep_nesting": ("training: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested deeper than 64 levels"),
    "duplicate_key": ("training: {epochs: 3}\nseed: 1\ntraining: {epochs: 4}\n",
                      "invalid YAML at line 3, column 1: duplicate key 'training'"),
    "huge_file": ("seed: 1\n" + "# padding\n" * 200_000, "bytes is too large for a config file"),
}


@pytest.mark.parametrize("case", YAML_FILES)
def test_hostile_yaml_files_are_refused_in_one_short_line(cwd: Path, case: str) -> None:
    content, needle = YAML_FILES[case]
    (cwd / "bad.yaml").write_text(content)
    line = assert_one_line_error(invoke("train", "--config", "bad.yaml"), "bad.yaml", needle)
    assert len(line) < 300  # never the expanded value


def test_hostile_set_values_are_refused_in_one_short_line(cwd: Path) -> None:
    levels = ["&a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]  # 10**6 values expanded
    bomb = f"[{', '.join(levels)}]"
    assert_one_line_error(invoke("train", "--set", f"system.params={{x: {bomb}}}"), "expands to more than")
    wide = "[" + ", ".join(map(str, range(50_000))) + "]"
    line = assert_one_line_error(invoke("train", "--set", f"training.epochs={wide}"),
                                 "training.epochs must be of type int, got [0, 1, 2")
    assert len(line) < 200


# --------------------------------------------------------------------------- plugins, through a real install


@pytest.fixture
def broken_plugin_env(tmp_path: Path) -> dict:
    """An environment where a distribution ``crashy-plugin`` declares an aits entry point that fails to import."""
    site = tmp_path / "site"
    (site / "crashy_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "crashy_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: crashy-plugin\nVersion: 0.1\n")
    (site / "crashy_plugin-0.1.dist-info" / "entry_points.txt").write_text("[aits]\ncrashy = crashy_module\n")
    (site / "crashy_module.py").write_text("raise ImportError(\"No module named 'missing_dependency'\")\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("AITS_NO_ENTRY_POINTS", None)
    env.pop("AITS_STRICT_PLUGINS", None)
    return env


def test_a_broken_plugin_warns_in_one_line_and_strict_mode_fails_in_one_line(tmp_path: Path,
                                                                            broken_plugin_env: dict) -> None:
    code, err = finish(aits("plugins", "--json", cwd=tmp_path, env=broken_plugin_env))
    assert code == 0, err
    # other plugins installed in this environment may be broken too: each is one line of its own
    assert all(line.startswith("warning: aits plugin '") for line in error_lines(err)), err
    assert ("warning: aits plugin 'crashy' is broken and was skipped (crashy-plugin 0.1: failed to load: "
            "ImportError: No module named 'missing_dependency')") in error_lines(err)
    code, err = finish(aits("plugins", cwd=tmp_path, env={**broken_plugin_env, "AITS_STRICT_PLUGINS": "1"}))
    assert code == 1
    (line,) = error_lines(err)
    assert re.fullmatch(r"error: aits plugin '[\w-]+' is broken \(.+\); unset AITS_STRICT_PLUGINS to skip it", line), line


# --------------------------------------------------------------------------- checkpoints: small and verified


def test_checkpoints_and_data_sets_hold_what_was_collected_not_the_capacity(trained: Path, cwd: Path) -> None:
    data = torch.load(trained / "model.pt", weights_only=True)
    size = data["buffer"]["size"]
    assert data["buffer"]["capacity"] == 100_000 and 0 < size < 100
    assert data["buffer"]["pos"].untyped_storage().nbytes() == data["buffer"]["pos"].nbytes  # no hidden capacity
    assert (trained / "model.pt").stat().st_size < 100_000  # 100,000 samples' room was ~20 MB
    collected = invoke("collect", *SMALL, "--epochs", 1, "--out", "collected")
    assert collected.exit_code == 0, collected.output
    assert (cwd / "collected" / "dataset.pt").stat().st_size < 50_000


def _flip_a_tensor_byte(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor record of a torch zip archive."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", raw[record.header_offset + 26: record.header_offset + 30])
    raw[record.header_offset + 30 + name_len + extra_len + record.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_flipped_bits_are_refused_by_every_command(trained: Path, cwd: Path) -> None:
    bad = cwd / "flipped.pt"
    bad.write_bytes((trained / "model.pt").read_bytes())
    _flip_a_tensor_byte(bad)
    needle = "corrupt file: its content does not match the hash recorded when it was written"
    assert_one_line_error(invoke("inspect", bad), "flipped.pt", needle)
    assert_one_line_error(invoke("train", "--resume", bad), needle)
    assert_one_line_error(invoke("simulate", "--checkpoint", bad, "--policy", "learned", "--periods", "0.1"), needle)


def test_non_finite_weights_are_refused_even_with_a_matching_hash(trained: Path, cwd: Path) -> None:
    data = torch.load(trained / "model.pt", weights_only=True)
    name = next(k for k in data["model"] if k.endswith("weight"))
    data["model"][name] = data["model"][name].clone()
    data["model"][name][0, 0] = float("nan")
    torch.save(sealed(data), cwd / "nan.pt")
    needle = f"the policy's weights are not finite (NaN or inf in {name})"
    assert_one_line_error(invoke("inspect", "nan.pt"), needle)
    assert_one_line_error(invoke("train", "--resume", "nan.pt"), needle)
    assert_one_line_error(invoke("simulate", "--checkpoint", "nan.pt", "--policy", "learned"), needle)


def test_a_checkpoint_whose_tensors_do_not_fit_its_config_is_refused_before_training(trained: Path, cwd: Path) -> None:
    data = torch.load(trained / "model.pt", weights_only=True)
    data["systems"]["pos"] = data["systems"]["pos"][:1].clone()  # fewer rows than systems
    torch.save(sealed(data), cwd / "cut.pt")
    assert_one_line_error(invoke("train", "--resume", "cut.pt"), "checkpoint does not match its config",
                          "systems.pos is (1, 2, 3) float64, expected (2, 2, 3) float64")
    data = torch.load(trained / "model.pt", weights_only=True)
    data["buffer"]["size"] = 10**9
    torch.save(sealed(data), cwd / "buffer.pt")
    assert_one_line_error(invoke("train", "--resume", "buffer.pt"), "outside training.replay_capacity=100000")


# --------------------------------------------------------------------------- atomic writes, JSON, plots


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_of_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        checkpoint.save(tmp_path / "x.pt", "dataset", {"buffer": {"size": 0}})
    finally:
        os.umask(old)
    assert (tmp_path / "x.pt").stat().st_mode & 0o777 == mode


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_json_outputs_write_null_for_nan(cwd: Path) -> None:
    result = invoke("train", *SMALL, "--epochs", 1, "--set", "training.max_generalize_iters=0", "--out", "run")
    assert result.exit_code == 0, result.output
    (line,) = (cwd / "run" / "metrics.jsonl").read_text().splitlines()
    assert _strict_json(line)["part2"]["pass_rate"] is None  # no Part 2 iteration: NaN
    for target in ("run", "run/model.pt"):
        shown = invoke("inspect", target, "--json")
        assert shown.exit_code == 0 and _strict_json(shown.stdout)["last_epoch"]["part2"]["pass_rate"] is None


@pytest.mark.parametrize(("given", "written"), [("figs", "figs/simulate.png"), ("orbit", "orbit.png")])
def test_plot_reports_the_file_it_wrote(cwd: Path, given: str, written: str) -> None:
    pytest.importorskip("matplotlib")
    (cwd / "figs").mkdir()
    result = invoke("simulate", "-S", "figure_eight", "--periods", "0.2", "--policy", "freefall", "--plot", given)
    assert result.exit_code == 0, result.output
    assert f"plot written to {written}" in result.stderr
    assert (cwd / written).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- run directories: stale files, locks


def test_resuming_removes_the_temporary_files_of_killed_writes(trained: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for path in trained.rglob("*"):
        if path.is_file():
            (run / path.relative_to(trained)).parent.mkdir(parents=True, exist_ok=True)
            (run / path.relative_to(trained)).write_bytes(path.read_bytes())
    stale = [run / ".model.pt.1a2b3c4d.tmp", run / "checkpoints" / ".epoch-000002.pt.1a2b3c4d.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    result = invoke("train", "--resume", run / "checkpoints" / "epoch-000001.pt")
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in stale)
    assert not list(run.rglob("*.tmp"))


def test_a_locked_run_directory_is_refused_and_free_once_its_holder_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from aits import locks; "
         "p = Path(sys.argv[1]); p.mkdir(); locks.lock_run_dir(p); print('locked', flush=True); time.sleep(120)",
         str(tmp_path / "run")], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err = finish(aits("train", *SMALL, "--epochs", 1, "--out", "run", cwd=tmp_path))
        assert code == 2 and error_lines(err) == [f"error: run directory run is in use by another aits process "
                                                  f"(pid {holder.pid}); wait for it to finish or choose another --out"]
    finally:
        holder.kill()
        holder.wait()
    code, err = finish(aits("train", *SMALL, "--epochs", 1, "--out", "run", cwd=tmp_path))
    assert code == 0, err


# --------------------------------------------------------------------------- write failures


def test_a_write_failure_is_one_line_and_the_last_good_checkpoint_resumes(tmp_path: Path) -> None:
    args = [*SMALL, "--set", "system.params.count=8", "--set", "training.checkpoint_every=1", "--seed", "3",
            "--epochs", 12]
    limit = 60_000  # bytes per file: the growing checkpoints pass it after a few epochs

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    code, err = finish(aits("train", *args, "--out", "run", cwd=tmp_path, preexec_fn=small_files))
    assert code == 1, err
    assert "Traceback" not in err
    (line,) = [line for line in error_lines(err) if not line.startswith("epoch ")]  # progress lines aside
    assert line.startswith("error: cannot write run/checkpoints/epoch-") and ": File too large; " in line, line
    good = Path(line.split("the last good checkpoint is ", 1)[1].split(" ", 1)[0])
    assert good.name < line.split("cannot write ", 1)[1].split(":", 1)[0].rsplit("/", 1)[1]
    assert not list((tmp_path / "run").rglob("*.tmp"))
    reference = aits("train", *args, "--out", "reference", cwd=tmp_path)
    code, err = finish(aits("train", "--resume", good, cwd=tmp_path))
    assert code == 0, err
    assert finish(reference)[0] == 0
    ours, theirs = (torch.load(tmp_path / run / "model.pt", weights_only=True) for run in ("run", "reference"))
    assert ours["epoch"] == theirs["epoch"] == 12
    for key in ("model", "optimizer", "systems"):
        for name, tensor in ours[key].items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(tensor, theirs[key][name]), (key, name)


# --------------------------------------------------------------------------- runs that can always be stopped


@pytest.mark.parametrize(("endless", "resume_with"), [
    (f"training.steps_per_epoch={10**9}", "training.steps_per_epoch=2"),
    # Part 2 never done: the band [E_lower, energy_threshold] is too narrow for a whole minibatch
    (f"training.max_generalize_iters={10**9}", None),  # resumed like Part 1's: once is enough
], ids=["part1", "part2"])
def test_a_signal_inside_an_endless_epoch_stops_within_seconds_and_resumes(tmp_path: Path, endless: str,
                                                                          resume_with: str | None) -> None:
    args = [*SMALL, "--set", endless, "--set", "training.E_lower=1.99e-4", "--set", "training.E_upper=1.995e-4",
            "--epochs", 2, "--out", "run"]
    process = aits("train", *args, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "config.yaml").is_file():  # the epochs start right after it is written
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code, err = finish(process, timeout=30)
    assert time.monotonic() - sent < 10  # within the epoch (about 1 s, a loaded machine allowed for)
    assert code == 130 and "Traceback" not in err, err
    saved = "run/checkpoints/partial-epoch-000001.pt"
    assert f"interrupted by signal {int(signal.SIGINT)}: checkpoint saved to {saved}" in err
    assert f"resume with: aits train --resume {saved}" in err
    data = torch.load(tmp_path / saved, weights_only=True)
    assert data["epoch"] == 0 and data["metrics"] == []  # no epoch completed
    assert data["buffer"]["size"] > 0  # what the interrupted epoch collected is kept
    if resume_with is not None:
        code, err = finish(aits("train", "--resume", saved, "--set", resume_with, cwd=tmp_path))
        assert code == 0, err
        assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["epoch"] == 2
        epochs = [json.loads(line)["epoch"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2]


def test_a_hopeless_gate_is_noticed_and_fails_with_a_checkpoint(cwd: Path) -> None:
    result = invoke("train", *SMALL, "--epochs", 1, "--set", "training.energy_threshold=1e-20",
                    "--set", "training.E_lower=1e-22", "--set", "training.E_upper=1e-21",
                    "--set", "training.max_retrain_steps=5000", "--out", "run")  # the cap: a bound, should this fail
    line = assert_one_line_error(result, "Part 1 cannot pass the energy gate: system ",
                                 "rejected even at the smallest step the policy can take (model.min_dt_fraction=1e-05",
                                 "not below training.energy_threshold=1e-20", "no retraining can help",
                                 "state saved to run/checkpoints/failed-epoch-000001.pt", code=1)
    assert "|dE/E| = " in line
    assert checkpoint.load(cwd / "run" / "checkpoints" / "failed-epoch-000001.pt", "checkpoint")["epoch"] == 0


def test_probing_the_smallest_step_changes_nothing_in_a_run_that_can_pass(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from aits.training import part1

    args = ["train", *SMALL, "--epochs", 2, "--set", "system.params.e_max=0.95", "--set", "model.init_dt_fraction=0.5"]
    assert invoke(*args, "--out", tmp_path / "plain").exit_code == 0
    monkeypatch.setattr(part1, "HOPELESS_PROBE_EVERY", 1)  # probe after every rejection
    result = invoke(*args, "--out", tmp_path / "probed")
    assert result.exit_code == 0, result.output
    plain, probed = (torch.load(tmp_path / run / "model.pt", weights_only=True) for run in ("plain", "probed"))
    assert sum(m["part1"]["rejected"] for m in plain["metrics"]) > 0  # the probe did run
    for key in ("model", "systems", "counters"):
        for name, value in plain[key].items():
            assert (torch.equal(value, probed[key][name]) if isinstance(value, torch.Tensor)
                    else value == probed[key][name]), (key, name)


# --------------------------------------------------------------------------- resources checked before allocating


@pytest.mark.parametrize(("setting", "needles"), [
    (f"training.replay_capacity={10**12}", ["most of it for the replay buffer (",
                                             "set by training.replay_capacity=1000000000000"]),
    ("model.hidden=[1000000, 1000000]", ["most of it for the policy network and optimizer (",
                                         "set by model.hidden=[1000000, 1000000]"]),
    (f"system.params.count={10**8}", ["most of it for the training systems (", "set by system.params.count=100000000"]),
])
def test_a_run_too_big_for_the_machine_is_refused_with_the_figure(cwd: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  setting: str, needles: list[str]) -> None:
    from aits import resources

    monkeypatch.setattr(resources, "available_memory", lambda device: 16 * 10**9)  # the same figure on any machine
    line = assert_one_line_error(invoke("train", "--set", setting, "--out", "run"), *needles, code=2)
    assert "more than the 16 GB available on cpu" in line
    assert not (cwd / "run").exists()


def test_too_many_threads_are_refused_in_one_line(tmp_path: Path) -> None:
    code, err = finish(aits("train", "--set", "threads=100000", "--out", "run", cwd=tmp_path))  # was a segfault
    assert code == 2 and len(error_lines(err)) == 1, (code, err)
    assert error_lines(err)[0].startswith("error: config key threads=100000 is more than the ")
    assert error_lines(err)[0].endswith(" CPU(s) available to this process (0 = torch's default)")
    assert not (tmp_path / "run").exists()


def test_the_default_run_and_a_large_cluster_fit_a_small_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from aits import registry, resources
    from aits.config import load_config
    from aits.physics import Gravity
    from aits.training.build import build_adapter

    for sets in ([], ["system.generator=cluster", "system.params={count: 512, n: 64}"]):
        config = load_config(None, sets)
        generators = [registry.get_registry().get("initial_conditions", k.generator) for k in config.population_configs()]
        parts = resources.estimate(config, build_adapter(config, Gravity(1.0, 0.0)), generators, 8)
        assert {"replay buffer", "training systems", "policy network and optimizer"} <= {p.what for p in parts}
        assert sum(p.bytes for p in parts) < 10**9  # the estimate is no obstacle to ordinary runs
    available = resources.available_memory(torch.device("cpu"))
    assert available is not None and 0 < available <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
