"""Safe files: checkpoints hold plain data and load with ``weights_only=True`` (a pickle that would run
code is refused and runs nothing), YAML tags that build Python objects are refused, and every write is
atomic."""

from __future__ import annotations

import builtins
import io
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from aits import checkpoint
from aits.cli import app
from aits.config import load_config
from aits.errors import UserError

runner = CliRunner()
SMALL = ["--set", "system.params.count=2", "--set", "training.max_generalize_iters=2", "--set", "model.hidden=[8]"]


class CreatesMarker:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the pickle is ever executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return builtins.open, (str(self.marker), "w")


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint written by `aits collect` (a data set lies beside it)."""
    out = tmp_path_factory.mktemp("real") / "run"
    result = invoke("collect", *SMALL, "--epochs", 1, "--out", out)
    assert result.exit_code == 0, result.output
    return out / "model.pt"


def test_the_payload_would_really_create_the_marker(tmp_path: Path) -> None:
    """Control: a plain unpickler (or torch.load with weights_only=False) runs the payload."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(CreatesMarker(marker)))
    assert marker.exists()
    buffer = io.BytesIO()
    torch.save({"x": CreatesMarker(tmp_path / "control2")}, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=False)
    assert (tmp_path / "control2").exists()


def _evil_files(tmp_path: Path, real: Path, marker: Path) -> dict[str, Path]:
    good = torch.load(real, weights_only=True)
    files = {
        "bare": {"payload": CreatesMarker(marker)},
        "inside_a_valid_checkpoint": {**good, "extra": CreatesMarker(marker)},
        "as_the_config": {**good, "config": CreatesMarker(marker)},
        "as_a_tensor_list": {**good, "model": [CreatesMarker(marker)]},
    }
    paths = {}
    for name, obj in files.items():
        paths[name] = tmp_path / f"{name}.pt"
        torch.save(obj, paths[name])
    raw = tmp_path / "raw_pickle.pt"  # a bare pickle, not a torch archive
    raw.write_bytes(pickle.dumps(CreatesMarker(marker), protocol=2))
    paths["raw_pickle"] = raw
    return paths


@pytest.mark.parametrize("case", ["bare", "inside_a_valid_checkpoint", "as_the_config", "as_a_tensor_list", "raw_pickle"])
def test_code_carrying_checkpoint_is_refused_and_runs_nothing(tmp_path: Path, real: Path, case: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "PWNED"
    path = _evil_files(tmp_path, real, marker)[case]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=str(path.name)):
        checkpoint.load(path)
    assert not marker.exists()
    for args in (["train", "--resume", path], ["collect", "--resume", path], ["inspect", path],
                 ["generalize", path, "--data", real.parent / "dataset.pt"],
                 ["generalize", real, "--data", path]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and path.name in result.output
        assert not marker.exists(), f"{args} executed the pickle"
    assert not (tmp_path / "runs").exists()


def test_torch_archive_with_a_global_is_refused_as_unsafe(tmp_path: Path, real: Path) -> None:
    path = _evil_files(tmp_path, real, tmp_path / "PWNED")["inside_a_valid_checkpoint"]
    with pytest.raises(UserError, match=r"refused to load: it holds Python objects, not plain data"):
        checkpoint.load(path)
    assert not (tmp_path / "PWNED").exists()


def test_checkpoints_are_loaded_with_weights_only(tmp_path: Path, real: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    original = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    checkpoint.load(real, "checkpoint")
    assert seen == [True]


def test_real_checkpoint_is_plain_data_with_everything_needed(real: Path) -> None:
    data = torch.load(real, weights_only=True)  # would raise on any Python object
    for key in ("format", "format_version", "aits_version", "kind", "config", "plugins", "architecture", "model",
                "optimizer", "rng", "epoch", "metrics", "buffer", "systems"):
        assert key in data, key
    assert data["format"] == "aits" and data["format_version"] == checkpoint.FORMAT_VERSION
    assert data["kind"] == "checkpoint" and data["epoch"] == 1
    assert data["plugins"]["integrator"] == "leapfrog"
    dataset = torch.load(real.parent / "dataset.pt", weights_only=True)
    assert dataset["kind"] == "dataset" and int(dataset["buffer"]["size"]) > 0


# --------------------------------------------------------------------------- YAML


@pytest.mark.parametrize(
    "tag",
    ["!!python/object/apply:builtins.open [{marker}, w]", "!!python/object/new:builtins.open [{marker}, w]",
     "!!python/name:os.system", "!!python/module:os", "!!python/object:pathlib.PosixPath {{}}"],
)
def test_yaml_tags_that_build_python_objects_are_refused(tmp_path: Path, tag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "PWNED"
    value = tag.format(marker=marker)
    config = tmp_path / "evil.yaml"
    config.write_text(f"seed: {value}\n")
    with pytest.raises(UserError, match=r"evil\.yaml: invalid YAML.*refused.*tags that construct Python objects"):
        load_config(config)
    with pytest.raises(UserError, match=r"--set seed: cannot parse value"):
        load_config(None, [f"seed={value}"])
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--config", config)
    assert result.exit_code == 2 and "refused" in result.output and "Traceback" not in result.output
    result = invoke("train", "--set", f"seed={value}")
    assert result.exit_code == 2 and "cannot parse value" in result.output
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


def test_run_directory_yaml_is_read_safely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"seed: !!python/object/apply:builtins.open [{marker}, w]\n")
    result = invoke("inspect", run)
    assert result.exit_code == 2 and "refused" in result.output
    assert not marker.exists()


# --------------------------------------------------------------------------- atomic writes


class Boom(Exception):
    pass


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("error", [Boom("disk full"), KeyboardInterrupt()])
def test_atomic_write_leaves_no_partial_file(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "model.pt"

    def writer(f: Any) -> None:
        f.write(b"half of a checkpoint")
        raise error

    with pytest.raises(type(error)):
        checkpoint.atomic_write(target, writer)
    assert _listing(tmp_path) == []  # neither the target nor a temporary file


def test_atomic_write_keeps_the_old_file_when_the_new_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    checkpoint.atomic_write(target, lambda f: f.write(b"old, complete"))
    with pytest.raises(Boom):
        checkpoint.atomic_write(target, lambda f: (f.write(b"new, partial"), (_ for _ in ()).throw(Boom())))
    assert target.read_bytes() == b"old, complete"
    assert _listing(tmp_path) == ["model.pt"]


def test_checkpoint_save_is_atomic(tmp_path: Path, real: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(real.read_bytes())
    original = torch.save

    def dies_halfway(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        buffer = io.BytesIO()
        original(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise Boom("killed while writing")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(Boom):
        checkpoint.save(target, "checkpoint", {"epoch": 99})
    monkeypatch.setattr(torch, "save", original)
    assert _listing(tmp_path) == ["model.pt"]
    assert checkpoint.load(target, "checkpoint")["epoch"] == 1  # the previous, complete file


def test_saving_into_a_new_directory_creates_it(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path / "a" / "b" / "x.pt", "dataset", {"buffer": {"size": 0}})
    assert checkpoint.load(path, "dataset")["buffer"] == {"size": 0}
    assert _listing(path.parent) == ["x.pt"]
    assert not any(name.endswith(".tmp") for name in os.listdir(path.parent))
