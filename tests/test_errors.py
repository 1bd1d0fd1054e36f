"""Bad input through the real command line: one line naming the file or key and the problem, exit code 2,
no traceback, and no run directory left behind."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aits import checkpoint, registry
from conftest import FakeDist, FakeEntryPoint
from aits.cli import app
from aits.errors import UserError
from aits.hookspecs import hookimpl

SMALL = ["--set", "system.params.count=4", "--set", "training.max_generalize_iters=2",
         "--set", "training.replay_batch_size=16", "--set", "model.hidden=[8]"]
runner = CliRunner()


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result: Any, *needles: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one non-empty line (on stderr) holding every needle."""
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out and not isinstance(result.exception, (UserError, KeyError, RuntimeError, ValueError))
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    line = lines[0]
    assert line.startswith("error: "), line
    assert line in result.stderr
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory; the default run directory would be created under ./runs."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real files from `aits collect`: an analytic checkpoint and data set, plus data sets that do not fit it."""
    root = tmp_path_factory.mktemp("made")
    runs = {
        "analytic": [],
        "history": ["--set", "features.adapter=history", "--set", "features.history_len=2", "--set", "training.steps_per_epoch=3"],
        "three_bodies": ["--set", "system.generator=figure_eight", "--set", "system.params={count: 2}"],
    }
    for name, extra in runs.items():
        result = invoke("collect", *SMALL, *extra, "--epochs", 1, "--out", root / name)
        assert result.exit_code == 0, result.output
    return {"checkpoint": root / "analytic" / "model.pt", "dataset": root / "analytic" / "dataset.pt",
            "history_dataset": root / "history" / "dataset.pt", "three_body_dataset": root / "three_bodies" / "dataset.pt",
            "run": root / "analytic"}


def sealed(data: Any) -> Any:
    """A forged file's payload with a content hash that matches it, so that the checks behind the hash are reached."""
    return {**data, "content_hash": checkpoint.content_hash(data)} if isinstance(data, dict) else data


def no_run_directory(cwd: Path) -> None:
    assert not (cwd / "runs").exists(), "a failed command left a run directory behind"


# --------------------------------------------------------------------------- config files and options


CONFIG_FILES: dict[str, tuple[str | bytes, tuple[str, ...]]] = {
    "yaml_syntax": ("training: {epochs: 3\n", ("bad.yaml", "invalid YAML at line 2")),
    "not_a_mapping": ("- 1\n- 2\n", ("bad.yaml", "must be a YAML mapping, got list")),
    "scalar_document": ("42\n", ("bad.yaml", "must be a YAML mapping, got int")),
    "unknown_key": ("training: {energy_treshold: 1.0e-4}\n", ("bad.yaml", "unknown config key training.energy_treshold",
                                                             "did you mean training.energy_threshold?")),
    "unknown_section": ("trainig: {epochs: 3}\n", ("bad.yaml", "did you mean training?")),
    "wrong_type": ("model: {hidden: [8, wide]}\n", ("bad.yaml", "model.hidden[1] must be of type int, got 'wide'")),
    "section_not_mapping": ("training: 3\n", ("bad.yaml", "config section training must be a mapping")),
    "out_of_range": ("training: {energy_threshold: -1.0}\n", ("training.energy_threshold must be > 0",)),
    "not_finite": ("training: {learning_rate: .inf}\n", ("bad.yaml", "training.learning_rate must be a finite number")),
    "python_tag": ("seed: !!python/object/apply:os.getcwd []\n", ("bad.yaml", "refused", "python/object/apply")),
    "binary": (bytes(range(256)) * 4, ("bad.yaml", "not a YAML text file")),
}


@pytest.mark.parametrize("command", ["train", "collect"])
@pytest.mark.parametrize("case", CONFIG_FILES)
def test_bad_config_file(cwd: Path, command: str, case: str) -> None:
    content, needles = CONFIG_FILES[case]
    path = cwd / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert_one_line_error(invoke(command, "--config", path, "--epochs", 1), *needles)
    no_run_directory(cwd)


def test_missing_and_unreadable_config_files(cwd: Path) -> None:
    assert_one_line_error(invoke("train", "--config", "nope.yaml"), "config file not found: nope.yaml")
    (cwd / "adir").mkdir()
    assert_one_line_error(invoke("train", "--config", "adir"), "cannot read config file adir")
    no_run_directory(cwd)


OVERRIDES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "empty_value": (["--set", "training.epochs="], ("--set training.epochs= has an empty value",)),
    "no_equals": (["--set", "training.epochs"], ("--set expects section.key=value",)),
    "unknown_key": (["--set", "training.epoch=3"], ("unknown config key training.epoch", "did you mean training.epochs?")),
    "wrong_type": (["--set", "training.epochs=many"], ("training.epochs must be of type int, got 'many'",)),
    "out_of_range": (["--set", "training.energy_threshold=0"], ("training.energy_threshold must be > 0",)),
    "band_order": (["--set", "training.E_lower=1e-3"], ("training.E_lower must satisfy 0 < E_lower < E_upper",)),
    "not_finite": (["--set", "physics.G=.nan"], ("physics.G must be a finite number",)),
    "choice": (["--set", "model.activation=sigmoid"], ("model.activation must be one of tanh, silu, relu, gelu",)),
    "epochs_option": (["--epochs", "0"], ("training.epochs must be >= 1",)),
    "seed_option": (["--seed", str(2**70)], ("seed must be an integer in [0, 2**63)",)),
    "device_option": (["--device", "tpu"], ("device must be one of cpu, cuda, auto or cuda:N",)),
    "value_not_section": (["--set", "training.epochs.x=1"], ("training.epochs is a value (150), not a section",)),
    "python_tag": (["--set", "seed=!!python/object/apply:os.getcwd []"], ("--set seed: cannot parse value",)),
    # plugin names that do not exist, with a suggestion
    "integrator": (["--set", "integrator=leapfrg"], ("unknown integrator 'leapfrg'", "did you mean 'leapfrog'?")),
    "features": (["--set", "features.adapter=histroy"], ("unknown features 'histroy'", "did you mean 'history'?")),
    "loss": (["--set", "training.loss=energy_bnd"], ("unknown loss 'energy_bnd'", "did you mean 'energy_band'?")),
    "generator": (["--set", "system.generator=binary_bach"],
                  ("unknown initial conditions 'binary_bach'", "did you mean 'binary_batch'?")),
    # parameters of the initial-condition generator
    "param_unknown": (["--set", "system.params.e_mx=0.5"],
                      ("unknown parameter system.params.e_mx for binary_batch", "did you mean e_max?")),
    "param_type": (["--set", "system.params.count=some"], ("system.params.count for binary_batch must be of type int",)),
    "param_range": (["--set", "system.params.count=0"], ("system.params (binary_batch): count must be >= 1",)),
    "param_range_e": (["--set", "system.params.e_max=1.5"], ("system.params (binary_batch): need 0 <= e_min <= e_max < 1",)),
}


@pytest.mark.parametrize("command", ["train", "collect"])
@pytest.mark.parametrize("case", OVERRIDES)
def test_bad_option_or_override(cwd: Path, command: str, case: str) -> None:
    args, needles = OVERRIDES[case]
    assert_one_line_error(invoke(command, *args), *needles)
    no_run_directory(cwd)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--epochs", "many"], "'--epochs'"),
        (["train", "--bogus"], "--bogus"),
        (["generalize", "model.pt"], "'--data'"),
        (["generalize", "model.pt", "--data", "d.pt", "--rounds", "0"], "'--rounds'"),
        (["inspect"], "PATH"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_usage_errors_exit_2_without_traceback(cwd: Path, args: list[str], needle: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "Error" in line]
    assert len(errors) == 1 and needle in errors[0], result.output
    no_run_directory(cwd)


def test_debug_flag_shows_the_exception(cwd: Path) -> None:
    result = invoke("--debug", "train", "--set", "training.epochs=0")
    assert isinstance(result.exception, UserError) and "training.epochs must be >= 1" in str(result.exception)
    quiet = invoke("train", "--set", "training.epochs=0")  # --debug does not stick to later commands
    assert_one_line_error(quiet, "training.epochs must be >= 1")


# --------------------------------------------------------------------------- checkpoints and data sets


def _checkpoint_variants(good: Path, into: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    raw = good.read_bytes()
    data = torch.load(good, weights_only=True)
    files: dict[str, tuple[Path, tuple[str, ...]]] = {}

    def save(name: str, obj: Any, *needles: str) -> None:
        torch.save(sealed(obj), into / name)
        files[name] = (into / name, (name, *needles))

    def write(name: str, content: bytes, *needles: str) -> None:
        (into / name).write_bytes(content)
        files[name] = (into / name, (name, *needles))

    not_zip = "unreadable, truncated or not an aits file (not a complete torch zip archive)"
    write("random.pt", os.urandom(4096), not_zip)
    write("empty.pt", b"", not_zip)
    write("truncated.pt", raw[: len(raw) // 2], not_zip)
    write("text.pt", b"hello, I am not a checkpoint\n", not_zip)
    write("bad_member.pt", raw.replace(b"data.pkl", b"data.pkx"), "unreadable or truncated aits file")
    save("version.pt", {**data, "format_version": 999}, "file format version 999 is not supported", "reads versions 1, 2")
    save("foreign.pt", {"weights": torch.zeros(3)}, "not an aits file")
    save("list.pt", [1, 2, 3], "not an aits file")
    save("no_config.pt", {k: v for k, v in data.items() if k != "config"}, "checkpoint has no config")
    save("bad_config.pt", {**data, "config": {**data["config"], "trainig": {}}}, "unknown config key trainig")
    save("no_model.pt", {k: v for k, v in data.items() if k != "model"}, "checkpoint does not match its config")
    bad_model = {**data, "model": {k: v[..., :1] for k, v in data["model"].items()}}
    save("bad_model.pt", bad_model, "checkpoint does not match its config")
    save("dataset_kind.pt", {**data, "kind": "dataset"}, "is a dataset, expected a checkpoint")
    return files


CHECKPOINT_CASES = ["random.pt", "empty.pt", "truncated.pt", "text.pt", "bad_member.pt", "version.pt", "foreign.pt", "list.pt",
                    "no_config.pt", "bad_config.pt", "no_model.pt", "bad_model.pt", "dataset_kind.pt"]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoint_for_resume_and_generalize(cwd: Path, made: dict[str, Path], case: str) -> None:
    path, needles = _checkpoint_variants(made["checkpoint"], cwd)[case]
    assert_one_line_error(invoke("train", "--resume", path), *needles)
    assert_one_line_error(invoke("collect", "--resume", path), *needles)
    assert_one_line_error(invoke("generalize", path, "--data", made["dataset"]), *needles)
    no_run_directory(cwd)


@pytest.mark.parametrize("case", ["random.pt", "empty.pt", "truncated.pt", "version.pt", "foreign.pt", "no_config.pt", "no_model.pt"])
def test_bad_checkpoint_for_inspect(cwd: Path, made: dict[str, Path], case: str) -> None:
    path, needles = _checkpoint_variants(made["checkpoint"], cwd)[case]
    needles = tuple(n for n in needles if "match its config" not in n and "has no config" not in n)
    line = assert_one_line_error(invoke("inspect", path), *needles)
    if case in ("no_config.pt", "no_model.pt"):
        assert "malformed aits checkpoint" in line


def test_missing_checkpoint_and_directory(cwd: Path, made: dict[str, Path]) -> None:
    assert_one_line_error(invoke("train", "--resume", "nope.pt"), "file not found: nope.pt")
    assert_one_line_error(invoke("generalize", "nope.pt", "--data", made["dataset"]), "file not found: nope.pt")
    (cwd / "adir").mkdir()
    assert_one_line_error(invoke("train", "--resume", "adir"), "adir is a directory")
    assert_one_line_error(invoke("inspect", "nope"), "path not found: nope")
    assert_one_line_error(invoke("inspect", "adir"), "adir is not an aits run directory (no config.yaml)")
    no_run_directory(cwd)


def test_resume_refuses_a_config_file(cwd: Path, made: dict[str, Path]) -> None:
    (cwd / "c.yaml").write_text("seed: 1\n")
    assert_one_line_error(invoke("train", "--resume", made["checkpoint"], "--config", "c.yaml"),
                          "--resume takes its config from the checkpoint")


@pytest.mark.parametrize(
    "dataset, needles",
    [
        ("history_dataset", ("dataset.pt: data set features", "'adapter': 'history'", "do not fit the model")),
        ("three_body_dataset", ("dataset.pt: data set features", "N=3, D=2", "do not fit")),
        ("checkpoint", ("model.pt: is a checkpoint, expected a dataset",)),
    ],
)
def test_data_set_that_does_not_fit_the_model(cwd: Path, made: dict[str, Path], dataset: str, needles: tuple[str, ...]) -> None:
    assert_one_line_error(invoke("generalize", made["checkpoint"], "--data", made[dataset]), *needles)
    no_run_directory(cwd)


def test_malformed_and_missing_data_sets(cwd: Path, made: dict[str, Path]) -> None:
    data = torch.load(made["dataset"], weights_only=True)
    torch.save(sealed({k: v for k, v in data.items() if k != "buffer"}), cwd / "nobuf.pt")
    assert_one_line_error(invoke("generalize", made["checkpoint"], "--data", "nobuf.pt"), "nobuf.pt: malformed data set")
    small = {**data, "buffer": {**data["buffer"], "pos": data["buffer"]["pos"][:, :, :1]}}
    torch.save(sealed(small), cwd / "shape.pt")
    assert_one_line_error(invoke("generalize", made["checkpoint"], "--data", "shape.pt"),
                          "shape.pt: malformed data set (buffer.pos is (16, 2, 1), expected (16, 2, 3))")
    assert_one_line_error(invoke("generalize", made["checkpoint"], "--data", "none.pt"), "file not found: none.pt")
    (cwd / "random.pt").write_bytes(os.urandom(1000))
    assert_one_line_error(invoke("generalize", made["checkpoint"], "--data", "random.pt"), "random.pt: unreadable, truncated")
    no_run_directory(cwd)


def test_inspect_run_directory_with_broken_files(cwd: Path, made: dict[str, Path]) -> None:
    run = cwd / "run"
    run.mkdir()
    (run / "config.yaml").write_text("training: {epochs: 3\n")
    assert_one_line_error(invoke("inspect", run), "config.yaml: invalid YAML")
    (run / "config.yaml").write_text((made["run"] / "config.yaml").read_text())
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, \n')
    assert_one_line_error(invoke("inspect", run), "metrics.jsonl: not valid JSON lines")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "model.pt").write_bytes(b"garbage")
    assert_one_line_error(invoke("inspect", run), "model.pt: unreadable, truncated or not an aits file")


def test_good_files_still_inspect(made: dict[str, Path]) -> None:
    result = invoke("inspect", made["checkpoint"], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "checkpoint"
    result = invoke("inspect", made["dataset"], "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["kind"] == "dataset"


# --------------------------------------------------------------------------- initial-condition files


def _ic_files(into: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    good = np.array([[1.0, -0.5, 0, 0, 0, -0.5, 0], [1.0, 0.5, 0, 0, 0, 0.5, 0]])
    files: dict[str, tuple[Path, tuple[str, ...]]] = {}

    def npy(name: str, array: np.ndarray, *needles: str, **kw: Any) -> None:
        np.save(into / name, array, **kw)
        files[name] = (into / name, (name, *needles))

    def raw(name: str, content: bytes, *needles: str) -> None:
        (into / name).write_bytes(content)
        files[name] = (into / name, (name, *needles))

    npy("shape.npy", np.ones((3, 4)), "expected shape (N, 1+2D)", "got (1, 3, 4)")
    npy("one_body.npy", good[:1], "N >= 2")
    npy("rank4.npy", np.ones((2, 2, 2, 7)), "expected shape")
    nan = good.copy()
    nan[0, 2] = np.nan
    npy("nan.npy", nan, "contains NaN or infinite values")
    inf = good.copy()
    inf[1, 5] = np.inf
    npy("inf.npy", inf, "contains NaN or infinite values")
    neg = good.copy()
    neg[0, 0] = -1
    npy("mass.npy", neg, "every mass must be > 0")
    npy("object.npy", np.array([{"a": 1}, None], dtype=object), "not a readable numeric .npy array", allow_pickle=True)
    raw("random.npy", os.urandom(300), "not a readable numeric .npy array")
    same = good.copy()
    same[:, 1:4] = 0.0
    npy("coincident.npy", same, "two bodies start at the same place", "physics.softening > 0")
    raw("ragged.csv", b"m,x,y,vx,vy\n1,0,0,0,0\n1,1,0\n", "every row must hold the same number of numeric columns")
    raw("words.csv", b"m,x,y,vx,vy\n1,a,0,0,0\n1,1,0,0,1\n", "numeric")
    raw("binary.csv", bytes(range(128, 256)), "not a text (CSV) file")
    raw("empty.csv", b"", "expected shape")
    return files


IC_CASES = ["shape.npy", "one_body.npy", "rank4.npy", "nan.npy", "inf.npy", "mass.npy", "object.npy", "random.npy",
            "coincident.npy", "ragged.csv", "words.csv", "binary.csv", "empty.csv"]


@pytest.mark.parametrize("case", IC_CASES)
def test_bad_initial_condition_file(cwd: Path, case: str) -> None:
    path, needles = _ic_files(cwd)[case]
    result = invoke("train", "--set", "system.generator=from_file", "--set", f"system.params={{path: {path.name}}}",
                    "--epochs", 1)
    assert_one_line_error(result, "system.params (from_file)", *needles)
    no_run_directory(cwd)


def test_missing_initial_condition_file(cwd: Path) -> None:
    result = invoke("train", "--set", "system.generator=from_file", "--set", "system.params={path: nope.npy}")
    assert_one_line_error(result, "initial-condition file not found: nope.npy")
    result = invoke("train", "--set", "system.generator=from_file", "--set", "system.params={}")
    assert_one_line_error(result, "from_file needs a path (system.params.path)")
    no_run_directory(cwd)


def test_a_good_initial_condition_file_trains(cwd: Path) -> None:
    path, _ = _ic_files(cwd)["shape.npy"]
    np.save(path, np.array([[1.0, -0.5, 0, 0, 0, -0.5, 0], [1.0, 0.5, 0, 0, 0, 0.5, 0]]))
    result = invoke("train", *SMALL, "--set", "system.generator=from_file", "--set", f"system.params={{path: {path.name}}}",
                    "--epochs", 1, "--out", "ok")
    assert result.exit_code == 0, result.output
    assert (cwd / "ok" / "model.pt").is_file()


# --------------------------------------------------------------------------- output directories


def test_output_directory_that_cannot_be_created(cwd: Path) -> None:
    (cwd / "afile").write_text("x")
    assert_one_line_error(invoke("train", *SMALL, "--epochs", 1, "--out", "afile/run"),
                          "cannot create output directory afile/run")
    assert_one_line_error(invoke("train", *SMALL, "--epochs", 1, "--out", "afile"), "afile is an existing file")
    assert (cwd / "afile").read_text() == "x"


def test_existing_run_directory_is_never_overwritten(cwd: Path, made: dict[str, Path]) -> None:
    run = Path("taken")
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    for args in (["train", *SMALL, "--epochs", 1], ["collect", *SMALL, "--epochs", 1],
                 ["generalize", made["checkpoint"], "--data", made["dataset"]],
                 ["train", "--resume", made["checkpoint"]]):  # resuming into another directory
        assert_one_line_error(invoke(*args, "--out", run), "output directory taken already exists and is not empty")
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    assert (run / "notes.txt").read_text() == "mine"


def test_an_empty_existing_directory_may_be_used(cwd: Path) -> None:
    (cwd / "empty").mkdir()
    result = invoke("train", *SMALL, "--epochs", 1, "--out", "empty")
    assert result.exit_code == 0, result.output
    assert {"config.yaml", "metrics.jsonl", "model.pt"} <= {p.name for p in (cwd / "empty").iterdir()}


def test_default_run_directories_do_not_collide(cwd: Path) -> None:
    for _ in range(2):
        assert invoke("train", *SMALL, "--epochs", 1).exit_code == 0
    runs = sorted((cwd / "runs").iterdir())
    assert len(runs) == 2 and all((r / "model.pt").is_file() for r in runs)


# --------------------------------------------------------------------------- failures after start


def test_retrain_cap_fails_with_exit_1_and_keeps_a_checkpoint(cwd: Path) -> None:
    result = invoke("train", *SMALL, "--set", "system.generator=kepler_binary", "--set", "system.params={e: 0.9, count: 2}",
                    "--set", "model.init_dt_fraction=0.9", "--set", "training.max_retrain_steps=2", "--out", "capped")
    line = assert_one_line_error(result, "max_retrain_steps", "state saved to", code=1)
    saved = Path(line.rsplit("state saved to ", 1)[1])
    assert saved.is_file()
    resumed = invoke("inspect", saved, "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["epoch"] == 0


# --------------------------------------------------------------------------- broken plugins



class NoStep:
    """An 'integrator' without a step method."""

    name = "stepless"


def _import_fails() -> Any:
    raise ImportError("No module named 'missing_dependency'")


def _malformed() -> types.ModuleType:
    module = types.ModuleType("malformed_plugin")
    module.aits_register = hookimpl(lambda registrar: registrar.integrator(NoStep()))
    return module


@pytest.fixture
def broken_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [FakeEntryPoint("crashy", _import_fails, FakeDist("crashy-plugin", "0.1")),
           FakeEntryPoint("malformed", _malformed, FakeDist("malformed-plugin", "2.0"))]
    monkeypatch.setenv(registry.NO_ENTRY_POINTS_ENV, "0")
    monkeypatch.delenv(registry.STRICT_ENV, raising=False)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group=None, **kw: eps if group == "aits" else [])
    registry.get_registry.cache_clear()
    yield
    registry.get_registry.cache_clear()


@pytest.mark.filterwarnings("ignore:aits plugin")
def test_broken_plugins_are_listed_by_name_and_other_commands_work(cwd: Path, broken_plugins: None) -> None:
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    assert "broken plugin crashy" in result.output and "missing_dependency" in result.output
    assert "broken plugin malformed" in result.output and "stepless" in result.output
    assert "leapfrog" in result.output
    listing = json.loads(invoke("plugins", "--json").stdout)
    assert set(listing["broken"]) == {"crashy", "malformed"}
    assert "crashy-plugin 0.1" in listing["broken"]["crashy"]
    assert "stepless" not in {row["name"] for row in listing["plugins"]}
    trained = invoke("train", *SMALL, "--epochs", 1, "--out", "still-works")
    assert trained.exit_code == 0, trained.output
    assert_one_line_error(invoke("train", "--set", "integrator=stepless"), "unknown integrator 'stepless'")
