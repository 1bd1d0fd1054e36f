"""Checkpoint state: what a training checkpoint holds, and the only places that read one back — a
whole run (:func:`trainer_from_checkpoint`) or just its policy (:func:`load_policy`)."""

from __future__ import annotations

from pathlib import Path

import torch

from aits import checkpoint
from aits.config import RunConfig, apply_overrides, config_from_dict, saved_config
from aits.errors import UserError, clip
from aits.model import Policy
from aits.physics import Gravity
from aits.runtime import restore_rng_state, rng_state
from aits.training.buffer import CACHED, FIELDS, ReplayBuffer
from aits.training.build import build_policy, build_trainer
from aits.training.executors import Counters
from aits.training.strategy import Strategy
from aits.training.trainer import Reporter, Trainer


def checkpoint_payload(trainer: Trainer) -> dict:
    """Everything :func:`trainer_from_checkpoint` needs to continue the run exactly. With several
    processes every one must call it (it gathers their systems and samples); the payload is the
    one a single process would have saved."""
    cfg = trainer.config
    return {
        "config": cfg.to_dict(),
        "plugins": {"integrator": cfg.integrator, "features": cfg.features.adapter, "loss": cfg.training.loss,
                    "initial_conditions": ", ".join(kind.generator for kind in cfg.population_configs())},
        "architecture": {"in_dim": trainer.adapter.dim, "hidden": list(cfg.model.hidden),
                         "activation": cfg.model.activation, "history_len": trainer.adapter.history_len,
                         "memory_dim": trainer.adapter.memory_dim},
        "epoch": trainer.epoch,
        "metrics": trainer.metrics,
        "model": trainer.policy.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "rng": rng_state(trainer.rng),
        **population_states(trainer),
        "counters": {"force_evaluations": trainer.counters.force_evaluations,
                     "optimizer_steps": trainer.counters.optimizer_steps,
                     "nonfinite_steps": trainer.counters.nonfinite_steps},
    }


def restore(trainer: Trainer, state: dict) -> None:
    """Put a freshly built trainer into the state of :func:`checkpoint_payload`."""
    trainer.epoch = int(state["epoch"])
    trainer.metrics = list(state["metrics"])
    trainer.policy.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    restore_rng_state(state["rng"], trainer.rng)
    for p, saved in zip(trainer.populations, saved_populations(state, trainer)):
        p.load_buffer(saved["buffer"])
        p.load_state_dict(saved["systems"])
    vars(trainer.counters).update(vars(Counters(**state["counters"])))  # in place: the executors count into it
    if not trainer.strategy.is_global_zero:  # the first process holds the run's counts (Trainer.settle_counters)
        trainer.counters.force_evaluations = trainer.counters.nonfinite_steps = 0


def population_states(trainer: Trainer) -> dict:
    """Each population's live systems and replay buffer: for one population as top-level ``systems``
    and ``buffer`` (the layout of checkpoints before populations), else a ``populations`` list."""
    states = [{"name": p.name, "systems": p.state_dict(), "buffer": p.buffer_state()} for p in trainer.populations]
    if len(states) == 1:
        return {"systems": states[0]["systems"], "buffer": states[0]["buffer"]}
    return {"populations": states}


def saved_populations(state: dict, trainer: Trainer) -> list[dict]:
    """The ``{systems, buffer}`` of each of the trainer's populations in a saved state, or a
    ValueError when the state holds other populations."""
    saved = state["populations"] if "populations" in state else [{"systems": state["systems"], "buffer": state["buffer"]}]
    check_population_names([s.get("name") for s in saved], trainer)
    return saved


def check_population_names(held: list, trainer: Trainer) -> None:
    """A ValueError unless ``held``, the names of the populations in a saved file (one, unnamed, for a
    one-population run), are the trainer's."""
    names = [p.name for p in trainer.populations]
    if len(held) != len(names) or (len(held) > 1 and held != names):
        what = f"the populations {', '.join(map(str, held))}" if len(held) > 1 else "one population"
        raise ValueError(f"it holds {what}, the config {', '.join(names)}")


def read_checkpoint(path: Path) -> tuple[RunConfig, dict]:
    """A training checkpoint and its own config, validated; any problem is one line naming the file."""
    data = checkpoint.load(path, "checkpoint")
    saved = data.get("config")
    if not isinstance(saved, dict):
        raise UserError(f"{path}: checkpoint has no config")
    try:
        return config_from_dict(saved_config(saved)), data
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def load_policy(path: Path, gravity: Gravity) -> Policy:
    """The trained policy of a checkpoint (its own architecture and feature adapter), with ``gravity``
    for its features; eval mode, float64 on the CPU."""
    config, data = read_checkpoint(path)
    try:
        model = build_policy(config, gravity)
        model.load_state_dict(data["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: cannot rebuild its policy ({str(exc).splitlines()[0][:160]})") from None
    return model.to(torch.float64).eval()


def trainer_from_checkpoint(path: Path, overrides: list[str] | None = None, reporter: Reporter | None = None,
                            strategy: Strategy | None = None) -> Trainer:
    """Rebuild a trainer exactly as it was saved (``overrides`` apply on top of the saved config), on
    one process or on every process of ``strategy`` (any number of them)."""
    saved, data = read_checkpoint(path)
    trainer = build_trainer(config_from_dict(apply_overrides(saved.to_dict(), overrides or [])), reporter, strategy)
    fresh = checkpoint_payload(trainer)
    try:
        for p, saved in zip(trainer.populations, saved_populations(data, trainer)):  # first: the model depends on them
            where = "systems" if len(trainer.populations) == 1 else f"populations.{p.name}.systems"
            check_like(p.state_dict(), saved["systems"], where)
            check_buffer(saved["buffer"], p.buffer)
        for section in ("model", "optimizer"):
            check_like(fresh[section], data[section], section)
        restore(trainer, data)
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
        reason = clip(str(exc)) if str(exc) else type(exc).__name__
        raise UserError(f"{path}: checkpoint does not match its config ({type(exc).__name__}: {reason})") from None
    return trainer


def check_like(fresh: object, saved: object, where: str) -> None:
    """Raise ValueError unless every tensor of ``fresh`` has its shape and dtype in ``saved``."""
    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or (saved.shape, saved.dtype) != (fresh.shape, fresh.dtype):
            got = _described(saved) if isinstance(saved, torch.Tensor) else f"a {type(saved).__name__}"
            raise ValueError(f"{where} is {got}, expected {_described(fresh)}")
    elif isinstance(fresh, dict):
        if not isinstance(saved, dict):
            raise ValueError(f"{where} is a {type(saved).__name__}, expected a mapping")
        for key, value in fresh.items():
            if key not in saved:
                raise KeyError(f"{where}.{key}")
            check_like(value, saved[key], f"{where}.{key}")


def _described(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def check_buffer(state: object, buffer: ReplayBuffer) -> None:
    """Raise ValueError unless ``state`` is a replay buffer of at most the capacity with fields that fit."""
    if not isinstance(state, dict):
        raise ValueError(f"buffer is a {type(state).__name__}, expected a mapping")
    size = int(state["size"])
    if not 0 <= size <= buffer.capacity or not 0 <= int(state["cursor"]) < buffer.capacity:
        raise ValueError(f"buffer holds {size} samples (cursor {state['cursor']}), outside training.replay_capacity="
                         f"{buffer.capacity}")
    for name in (*FIELDS, *(name for name in CACHED if name in state and name in buffer.data)):
        held, got = buffer.data[name], state.get(name)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (size, *held.shape[1:]):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(f"buffer.{name} is {shape}, expected {(size, *held.shape[1:])}")
