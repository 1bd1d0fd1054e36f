"""Runs on disk: the run directory, metrics, periodic and final checkpoints, data sets, resume,
and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from aits import checkpoint, jsonio, locks, sinks
from aits.config import RunConfig, dump_yaml
from aits.errors import EnvironmentFault, RunFailed, UserError, clip
from aits.training.distributed import PeerFailed
from aits.training.state import check_buffer, check_population_names, checkpoint_payload
from aits.training.trainer import StopRequested, Trainer, never


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, saved: Path, remaining: int = 0) -> None:
        super().__init__(f"stopped by signal {signum}; saved {saved}")
        self.signum, self.saved, self.remaining = signum, saved, remaining  # remaining: epochs still to run

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    @property
    def dataset(self) -> Path:
        return self.path / "dataset.pt"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.path / "checkpoints" / f"epoch-{epoch:06d}.pt"


def new_run_dir(out: Path | None, command: str) -> RunDir:
    """A fresh run directory, locked for this process; an existing non-empty one is never reused."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{command}-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = Path("runs") / f"{command}-{stamp}-{n}"
    elif out.exists() and not out.is_dir():
        raise UserError(f"output directory {out} is an existing file; choose another --out")
    _refuse_used(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {out}: {exc.strerror}") from None
    locks.lock_run_dir(out)
    _refuse_used(out)  # again under the lock: another process may have finished a run here meanwhile
    return RunDir(out)


def _refuse_used(out: Path) -> None:
    if out.is_dir() and any(p.name != locks.LOCK_NAME for p in out.iterdir()):
        raise UserError(f"output directory {out} already exists and is not empty; choose another --out (or --resume)")


def continue_run(path: Path, epoch: int) -> RunDir:
    """The run directory ``path`` of a checkpoint taken after ``epoch`` epochs, locked for this
    process, its metrics cut back to those epochs."""
    locks.lock_run_dir(path)
    run = RunDir(path)
    if run.metrics.is_file():
        kept = [line for line in run.metrics.read_text().splitlines() if _epoch_of(line) <= epoch]
        checkpoint.atomic_write(run.metrics, lambda f: f.write("".join(f"{line}\n" for line in kept).encode()))
    return run


def _epoch_of(line: str) -> float:
    try:
        return float(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return float("inf")  # not an epoch's record: dropped


def run_of(checkpoint_path: Path) -> Path | None:
    """The run directory that holds ``checkpoint_path`` as one of its periodic checkpoints, if any."""
    return checkpoint_path.parent.parent if checkpoint_path.parent.name == "checkpoints" else None


def save_checkpoint(trainer: Trainer, path: Path) -> Path:
    """Every process takes part (the state is gathered); the first one writes the file."""
    payload = checkpoint_payload(trainer)
    return checkpoint.save(path, "checkpoint", payload) if trainer.strategy.is_global_zero else path


def save_dataset(trainer: Trainer, path: Path) -> Path:
    entries = [{"name": p.name, "bodies": p.bodies, "dims": p.systems.dims, "buffer": p.buffer.state_dict()}
               for p in trainer.populations]
    return checkpoint.save(path, "dataset", {
        "config": trainer.config.to_dict(),
        "features": {"adapter": trainer.config.features.adapter, "dim": trainer.adapter.dim,
                     "history_len": trainer.adapter.history_len, "memory_dim": trainer.adapter.memory_dim},
        **({k: entries[0][k] for k in ("bodies", "dims", "buffer")} if len(entries) == 1 else {"populations": entries}),
    })


def load_dataset_into(trainer: Trainer, path: Path) -> None:
    """Replace the trainer's replay buffers by a saved data set, refusing one that does not fit."""
    data = checkpoint.load(path, "dataset")
    have = {"adapter": trainer.config.features.adapter, "dim": trainer.adapter.dim,
            "history_len": trainer.adapter.history_len, "memory_dim": trainer.adapter.memory_dim}
    try:
        features = data["features"]
        entries = data["populations"] if "populations" in data else [data]
        held = [(e.get("name", "system"), e["bodies"], e["dims"], e["buffer"], int(e["buffer"]["size"])) for e in entries]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: malformed data set (missing or bad field {exc})") from None
    try:
        check_population_names([h[0] for h in held], trainer)
    except ValueError as exc:
        raise UserError(f"{path}: data set does not fit the run ({clip(str(exc))})") from None
    for p, (_, bodies, dims, buffer, size) in zip(trainer.populations, held):
        if features != have or (bodies, dims) != (p.bodies, p.systems.dims):
            raise UserError(
                f"{path}: data set features {clip(str(features))} for N={bodies}, D={dims} do not fit "
                f"the model ({have} for N={p.bodies}, D={p.systems.dims})"
            )
        if size > p.buffer.capacity:
            raise UserError(f"{path}: holds {size} samples, more than training.replay_capacity={p.buffer.capacity}")
        try:
            check_buffer(buffer, p.buffer)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: malformed data set ({clip(str(exc))})") from None
        try:
            p.buffer.load_state_dict(buffer)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
            reason = clip(str(exc)) if str(exc) else type(exc).__name__
            raise UserError(f"{path}: malformed data set ({type(exc).__name__}: {reason})") from None


MID_EPOCH_GRACE_S = 1.0  # how long after a signal the current epoch may still end at its boundary


@dataclass
class StopRequest:
    """The first SIGINT/SIGTERM received, and when."""

    signum: int | None = None
    at: float = 0.0

    def __bool__(self) -> bool:
        return self.signum is not None

    def overdue(self) -> bool:
        """Whether a signal came more than :data:`MID_EPOCH_GRACE_S` ago: then the epoch stops where it is."""
        return self.signum is not None and time.monotonic() - self.at > MID_EPOCH_GRACE_S


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Record SIGINT/SIGTERM instead of dying; a second signal interrupts at once."""
    request = StopRequest()

    def handler(signum: int, frame: object) -> None:
        if request:
            raise KeyboardInterrupt
        request.signum, request.at = signum, time.monotonic()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def write_metrics(run: RunDir, metrics: list[dict]) -> None:
    """Rewrite metrics.jsonl from a list (atomic), e.g. when resuming from a checkpoint."""
    text = "".join(jsonio.dumps(m) + "\n" for m in metrics)
    checkpoint.atomic_write(run.metrics, lambda f: f.write(text.encode()))


def run_epochs(trainer: Trainer, run: RunDir, until_epoch: int, part1: bool = True, part2: bool = True,
               on_epoch: Callable[[dict], None] | None = None) -> None:
    """Run epochs until ``trainer.epoch == until_epoch``, giving metrics to the run's sinks
    (``logging.sinks``) and checkpointing.

    A signal stops the run with a checkpoint: at the epoch boundary when the epoch ends within
    :data:`MID_EPOCH_GRACE_S`, and resuming from it gives the same result as an uninterrupted run;
    otherwise within the epoch, at the next Part 1 or Part 2 iteration, as ``partial-epoch-N.pt``:
    the state at that iteration (policy, optimizer, systems and replay buffer as far as they got,
    the completed epochs' count and metrics), from which ``--resume`` runs epoch N again in full.
    With several processes a signal to any of them stops all at the same point. A failed write stops
    the run with one line naming the file, the cause and the last good checkpoint. Only the first
    process feeds the sinks and writes files.
    ``on_epoch(metrics)`` is called after each epoch is logged and checkpointed; an exception from it
    ends the run there (a sweep's pruning).
    """
    every = trainer.config.training.checkpoint_every
    strategy = trainer.strategy
    logs = sinks.open_sinks(trainer, run.path) if strategy.is_global_zero else nullcontext(sinks.Sinks([]))
    with stop_on_signals() as stop, naming_last_checkpoint(run), logs as log:
        trainer.should_stop = stop.overdue
        try:
            while trainer.epoch < until_epoch:
                try:
                    metrics = trainer.run_epoch(part1, part2)
                except RunFailed as exc:  # e.g. the retrain cap: keep the state for inspection
                    if isinstance(exc, PeerFailed):  # nothing left to gather the state from
                        raise
                    saved = save_checkpoint(trainer, run.path / "checkpoints" / f"failed-epoch-{trainer.epoch + 1:06d}.pt")
                    raise type(exc)(f"{exc}; state saved to {saved}") from exc
                except StopRequested:
                    saved = save_checkpoint(trainer, run.path / "checkpoints" / f"partial-epoch-{trainer.epoch + 1:06d}.pt")
                    raise Interrupted(signal_of(trainer, stop), saved, until_epoch - trainer.epoch) from None
                log.epoch(metrics)
                if strategy.reduce_boolean_decision(bool(stop), all=False):
                    saved = save_checkpoint(trainer, run.epoch_checkpoint(trainer.epoch))
                    raise Interrupted(signal_of(trainer, stop), saved, until_epoch - trainer.epoch)
                if trainer.epoch % every == 0 and trainer.epoch < until_epoch:
                    save_checkpoint(trainer, run.epoch_checkpoint(trainer.epoch))
                if on_epoch is not None:
                    on_epoch(metrics)
        finally:
            trainer.should_stop = never
        log.finish(sinks.summary(trainer))


def signal_of(trainer: Trainer, stop: StopRequest) -> int:
    """The signal that stopped the run: this process's, or another's that stopped them all."""
    received = torch.tensor(stop.signum or 0, device=trainer.device)
    return int(trainer.strategy.all_gather(received).max())


@contextmanager
def naming_last_checkpoint(run: RunDir) -> Iterator[None]:
    """Add the newest periodic checkpoint of ``run`` (intact: every write is atomic) to a write failure
    or the failure of another process."""
    try:
        yield
    except (EnvironmentFault, PeerFailed) as exc:
        saved = sorted(run.path.glob("checkpoints/epoch-*.pt"))
        where = f"the last good checkpoint is {saved[-1]} (--resume continues from it)" if saved else \
            "no checkpoint of this run was written"
        raise type(exc)(f"{exc}; {where}") from None


def write_config(run: RunDir, config: RunConfig) -> None:
    text = dump_yaml(config)
    checkpoint.atomic_write(run.config, lambda f: f.write(text.encode()))
