"""Typed run configuration: dataclass defaults < YAML file < ``--set key=value`` overrides.

Unknown keys are errors with a suggestion; types and ranges are checked before any work.
"""

from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from aits.errors import UserError, shown, suggestion


@dataclass(frozen=True)
class PhysicsConfig:
    G: float = 1.0
    softening: float = 0.0

    def validate(self) -> None:
        _check(self.G > 0, "physics.G", "must be > 0")
        _check(self.softening >= 0, "physics.softening", "must be >= 0")


@dataclass(frozen=True)
class SystemConfig:
    generator: str = "binary_batch"
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the generator

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class PopulationConfig:
    """One population of training systems (an entry of ``populations``)."""

    name: str = ""  # how metrics name it; default: the generator's name
    generator: str = "binary_batch"
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the generator (count: how many)

    @property
    def label(self) -> str:
        return self.name or self.generator

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class FeaturesConfig:
    adapter: str = "analytic"
    history_len: int = 4

    def validate(self) -> None:
        _check(self.history_len >= 1, "features.history_len", "must be >= 1")


@dataclass(frozen=True)
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    init_dt_fraction: float = 0.02
    min_dt_fraction: float = 1e-5
    max_dt_fraction: float = 1.0
    output: str = "bounded"  # bounded: dt = base * tau * k^tanh(net), features clamped; free: dt/tau in [min, max]
    max_correction: float = 2.5  # k: a bounded policy's dt stays within a factor k of base * tau

    def validate(self) -> None:
        _check(self.output in OUTPUTS, "model.output", f"must be one of {', '.join(OUTPUTS)}")
        _check(self.max_correction > 1, "model.max_correction", "must be > 1")
        _check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "model.hidden", "must be a list of sizes >= 1")
        _check(self.activation in ACTIVATIONS, "model.activation", f"must be one of {', '.join(ACTIVATIONS)}")
        _check(0 < self.min_dt_fraction < self.max_dt_fraction, "model.min_dt_fraction",
               "must satisfy 0 < min_dt_fraction < max_dt_fraction")
        _check(self.min_dt_fraction < self.init_dt_fraction < self.max_dt_fraction, "model.init_dt_fraction",
               "must lie strictly between min_dt_fraction and max_dt_fraction")


ACTIVATIONS = ("tanh", "silu", "relu", "gelu")
OUTPUTS = ("bounded", "free")
DONE_CRITERIA = ("floor_and_gate", "gate")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 100
    steps_per_epoch: int = 4
    energy_threshold: float = 2e-4
    E_lower: float = 1e-6
    E_upper: float = 1e-4
    loss: str = "energy_target"
    learning_rate: float = 3e-3
    max_retrain_steps: int = 0
    replay_capacity: int = 100_000
    replay_batch_size: int = 512
    max_generalize_iters: int = 20
    max_chunk_pairs: int = 1_048_576
    done_criterion: str = "floor_and_gate"
    grad_clip: float = 1.0
    nonfinite_penalty: float = 100.0
    checkpoint_every: int = 10

    def validate(self) -> None:
        _check(self.epochs >= 1, "training.epochs", "must be >= 1")
        _check(self.steps_per_epoch >= 1, "training.steps_per_epoch", "must be >= 1")
        _check(self.energy_threshold > 0, "training.energy_threshold", "must be > 0")
        _check(0 < self.E_lower < self.E_upper, "training.E_lower", "must satisfy 0 < E_lower < E_upper")
        _check(self.E_lower < self.energy_threshold, "training.E_lower", "must be below energy_threshold")
        _check(self.learning_rate > 0, "training.learning_rate", "must be > 0")
        _check(self.max_retrain_steps >= 0, "training.max_retrain_steps", "must be >= 0 (0 = unlimited)")
        _check(self.replay_capacity >= 1, "training.replay_capacity", "must be >= 1")
        _check(self.replay_batch_size >= 1, "training.replay_batch_size", "must be >= 1")
        _check(self.max_generalize_iters >= 0, "training.max_generalize_iters", "must be >= 0")
        _check(self.max_chunk_pairs >= 1, "training.max_chunk_pairs", "must be >= 1")
        _check(self.done_criterion in DONE_CRITERIA, "training.done_criterion", f"must be one of {', '.join(DONE_CRITERIA)}")
        _check(self.grad_clip > 0, "training.grad_clip", "must be > 0")
        _check(self.nonfinite_penalty > 0, "training.nonfinite_penalty", "must be > 0")
        _check(self.checkpoint_every >= 1, "training.checkpoint_every", "must be >= 1")


@dataclass(frozen=True)
class LoggingConfig:
    sinks: list[str] = field(default_factory=lambda: ["jsonl"])  # metric sinks (see aits plugins)

    def validate(self) -> None:
        _check(len(set(self.sinks)) == len(self.sinks), "logging.sinks", "names a sink twice")


DEVICES = ("cpu", "cuda", "auto")
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    device: str = "cpu"
    threads: int = 1  # CPU threads for torch (0 = torch's default); small systems run fastest on one
    dtype: str = "float64"
    compile: bool = False  # torch.compile each Part 1 and Part 2 iteration into one graph (fixed shapes)
    integrator: str = "leapfrog"
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    populations: list[PopulationConfig] = field(default_factory=list)  # several kinds of system (instead of system)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self) -> None:
        _check(0 <= self.seed < 2**63, "seed", "must be an integer in [0, 2**63)")
        _check(self.device in DEVICES or (self.device.startswith("cuda:") and self.device[5:].isdigit()), "device",
               f"must be one of {', '.join(DEVICES)} or cuda:N")
        _check(self.dtype in DTYPES, "dtype", f"must be one of {', '.join(DTYPES)}")
        _check(self.threads >= 0, "threads", "must be >= 0 (0 = torch's default)")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value.validate()
        _check_int64(self, "")
        if self.populations:
            _check(self.system == SystemConfig(), "populations",
                   "replaces system: give one of them (a config file with populations and no system)")
            labels = [p.label for p in self.populations]
            twice = sorted({label for label in labels if labels.count(label) > 1})
            _check(not twice, "populations", f"names {', '.join(twice)} more than once (give each a name)")
            for key in ("replay_capacity", "replay_batch_size"):
                _check(getattr(self.training, key) >= len(labels), f"training.{key}",
                       f"must be at least the number of populations ({len(labels)})")

    def population_configs(self) -> list[PopulationConfig]:
        """The populations to train on: ``populations``, or ``system`` as the one population "system"."""
        return self.populations or [PopulationConfig("system", self.system.generator, self.system.params)]

    def params_key(self, i: int) -> str:
        """The config key of the ``i``-th population's generator parameters, for messages."""
        return f"populations[{i}].params" if self.populations else "system.params"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.populations:
            del data["system"]  # unused: populations replaces it
        else:
            del data["populations"]  # a config of one system reads as before
        return data


def _check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise UserError(f"config key {key} {problem}")


def _check_int64(section: Any, prefix: str) -> None:
    """Every integer of ``section`` (and its sub-sections) fits in 64 bits, as tensors and counters need."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            _check_int64(value, f"{prefix}{f.name}.")
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(v, int) and not -(2**63) <= v < 2**63:
                where = f"{prefix}{f.name}" + (f"[{i}]" if isinstance(value, list) else "")
                _check(False, where, f"is out of range (must fit in 64 bits), got {shown(v)}")


# --- reading --------------------------------------------------------------------------------------


def coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` as type ``kind`` (float, int, str, bool, list[int], dict), or a UserError."""
    origin = typing.get_origin(kind)
    if kind is float:
        if isinstance(value, str):  # YAML reads 2e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:  # an int too large for a float
                value = float("inf")
            if not math.isfinite(value):
                raise UserError(f"config key {key} must be a finite number, got {shown(value)}")
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is bool or kind is str:
        if isinstance(value, kind):
            return value
    elif origin is list:
        (item,) = typing.get_args(kind)
        if isinstance(value, list):
            if dataclasses.is_dataclass(item):
                return [_build(item, v, f"{key}[{i}].") for i, v in enumerate(value)]
            return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            check_size(value, f"config key {key}")
            return dict(value)
    else:  # pragma: no cover - a config field of a type this parser does not know
        raise TypeError(f"unsupported config type {kind}")
    name = getattr(kind, "__name__", str(kind))
    raise UserError(f"config key {key} must be of type {name}, got {shown(value)}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"config section {prefix.rstrip('.') or '(top level)'} must be a mapping, got {shown(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            hint = suggestion(str(key), names, prefix)
            name = key if isinstance(key, (str, int)) and str(key).isprintable() and str(key).strip() else shown(key)
            raise UserError(f"unknown config key {prefix}{shown(name) if len(str(name)) > 80 else name}{hint}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        kind, key = hints[name], prefix + name
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, data[name], key + ".")
        else:
            kwargs[name] = coerce(data[name], kind, key)
    return cls(**kwargs)


MAX_YAML_BYTES = 1 << 20  # a config is a few kB; refuse huge files before parsing them
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 100_000  # counted with every alias expanded ("billion laughs")


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys and nesting deeper than :data:`MAX_YAML_DEPTH`."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shown(key)}",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def safe_load(text: str, what: str) -> Any:
    """YAML ``text`` read with :class:`_BoundedLoader` (a ``yaml.YAMLError`` when malformed), and
    checked by :func:`check_size` as ``what``."""
    data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    check_size(data, what)
    return data


def check_size(data: Any, what: str) -> None:
    """Raise a :class:`UserError` when ``data`` holds more than :data:`MAX_YAML_VALUES` values, each
    shared or recursive reference counted every time it is reached (the walk stops at the limit)."""
    stack, count = [data], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise UserError(f"{what}: expands to more than {MAX_YAML_VALUES:,} values (through aliases)")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def read_yaml(path: Path) -> dict:
    """A YAML mapping read with the safe loader and bounded in size, or a one-line UserError."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise UserError(f"{path}: {size:,} bytes is too large for a config file (at most {MAX_YAML_BYTES:,})")
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a YAML text file (it is not valid UTF-8)") from None
    try:
        data = safe_load(text, str(path))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "python/" in problem:
            problem = f"refused: {problem} (tags that construct Python objects are not allowed)"
        raise UserError(f"{path}: invalid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the config must be a YAML mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects section.key=value, got {shown(text)}")
    path = key.strip().split(".")
    if not all(part.strip() for part in path) or not key.isprintable():
        raise UserError(f"--set expects section.key=value, got a malformed key {shown(key.strip())}")
    if not raw.strip():
        raise UserError(f"--set {key.strip()}= has an empty value")
    try:
        value = safe_load(raw, f"--set {key.strip()}")
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"--set {key.strip()}: cannot parse value {shown(raw)} ({problem})") from None
    return [part.strip() for part in path], value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``data`` with each ``section.key=value`` applied, in order.

    The value replaces whatever ``section.key`` held (a mapping is not merged into the old one), so
    that ``--set system.params={path: ics.npy}`` drops the parameters of the previous generator.
    """
    for text in overrides:
        path, value = parse_override(text)
        data = _set_path(data, path, value)
    return data


def _set_path(data: dict, path: list[str], value: Any, depth: int = 0) -> dict:
    """A copy of ``data`` with ``data[path[depth]]...[path[-1]] = value`` (sections copied, not shared)."""
    out = dict(data)
    head = path[depth]
    if depth == len(path) - 1:
        out[head] = value
    else:
        below = out.get(head, {})
        if not isinstance(below, dict):
            raise UserError(f"--set {'.'.join(path)}: {'.'.join(path[: depth + 1])} is a value ({shown(below)}), "
                            "not a section with keys")
        out[head] = _set_path(below, path, value, depth + 1)
    return out


# Values renamed because they misled; the old one is still read, with a one-line warning.
RENAMED_VALUES = {"training.done_criterion": {"band": "floor_and_gate"}}  # key -> {old: new}


def _renamed(data: dict, warn: bool = True) -> dict:
    """``data`` with every deprecated value of :data:`RENAMED_VALUES` replaced by its new name
    (``warn``: with a one-line warning, for what the user wrote)."""
    for key, renames in RENAMED_VALUES.items():
        path = key.split(".")
        value: Any = data
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value in renames:
            if warn:
                warnings.warn(f"config key {key}: {value!r} is deprecated, use {renames[value]!r} (the same meaning)",
                              FutureWarning, stacklevel=3)
            data = _set_path(data, path, renames[value])
    return data


def default_config_path() -> Path:
    """The ``aits.yaml`` embedded in the package (the same file as at the repository root)."""
    return Path(str(resources.files("aits") / "aits.yaml"))


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults < ``path`` (the embedded aits.yaml when None) < overrides; validated."""
    data = read_yaml(path if path is not None else default_config_path())
    if path is not None:
        try:  # unknown keys and wrong types of the file itself are reported with its name
            _build(RunConfig, data, "")
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    data = _renamed(apply_overrides(data, overrides or []))
    if path is None:
        data = _one_of_system_and_populations(data, {parse_override(o)[0][0] for o in overrides or []})
    config = _build(RunConfig, data, "")
    config.validate()
    return config


def _one_of_system_and_populations(data: dict, overridden: set[str]) -> dict:
    """The embedded default has both sections: it trains on its ``populations``, unless ``--set``
    changes ``system`` (and not ``populations``): then on that one kind of system, starting from the
    default's ``system`` section. Setting both is left to the validation to refuse."""
    if not data.get("populations") or not data.get("system") or {"system", "populations"} <= overridden:
        return data
    drop = "populations" if "system" in overridden else "system"
    return {key: value for key, value in data.items() if key != drop}


def saved_config(data: dict) -> dict:
    """A config saved in a checkpoint, with the keys that older versions did not write set to what
    those versions did (``model.output: free``), so that an old policy rebuilds as it was trained;
    renamed values are read under their new names without a warning (the user did not write them)."""
    if isinstance(data, dict):
        data = _renamed(data, warn=False)
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and "output" not in model:
        data = {**data, "model": {**model, "output": "free"}}
    return data


def config_from_dict(data: dict) -> RunConfig:
    """Rebuild a validated config from its ``to_dict()`` form (e.g. from a checkpoint)."""
    config = _build(RunConfig, _renamed(data), "")
    config.validate()
    return config


def dump_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
