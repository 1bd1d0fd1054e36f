"""The typed config: defaults < YAML file < ``--set`` overrides, suggestions for unknown keys, type and
range checks, a safe YAML loader — plus property-based tests of the parser."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aits.cli.app import overrides
from aits.config import (
    RunConfig,
    apply_overrides,
    config_from_dict,
    default_config_path,
    dump_yaml,
    load_config,
    parse_override,
    read_yaml,
    saved_config,
)
from aits.errors import UserError

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- defaults and precedence


def test_embedded_default_is_the_repository_aits_yaml_and_is_valid() -> None:
    path = default_config_path()
    assert path.is_file()
    root = Path(__file__).resolve().parents[1] / "aits.yaml"
    assert path.read_text() == root.read_text()
    config = load_config()
    # every key the file sets is a real config key with the value written there
    assert config.to_dict()["training"]["energy_threshold"] == yaml.safe_load(root.read_text())["training"]["energy_threshold"]
    assert config.training.energy_threshold == 2e-4 and config.training.E_lower == 1e-6 and config.training.E_upper == 1e-4


def test_missing_keys_fall_back_to_the_dataclass_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "training: {epochs: 7}\n"))
    assert config.training.epochs == 7
    assert config.training.steps_per_epoch == RunConfig().training.steps_per_epoch
    assert config.model == RunConfig().model


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing\n")) == RunConfig()


def test_file_then_set_then_typed_options(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: 1\ntraining: {epochs: 5, learning_rate: 0.01}\n")
    config = load_config(path, overrides(["training.epochs=6", "seed=2"], epochs=9, seed=None, device=None))
    assert config.training.epochs == 9  # the typed option wins over --set
    assert config.seed == 2  # --set wins over the file
    assert config.training.learning_rate == 0.01  # the file wins over the defaults


def test_compile_is_off_by_default_and_a_yaml_bool() -> None:
    assert load_config().compile is False
    assert load_config(None, ["compile=true"]).compile is True


def test_set_on_a_nested_key_keeps_its_siblings() -> None:
    config = load_config(None, ["system.params.count=3"])
    assert config.system.params["count"] == 3
    assert config.system.params["e_min"] == 0.5  # from aits.yaml, untouched


def test_the_default_trains_its_populations_unless_set_changes_its_system() -> None:
    default = load_config()
    assert [p.label for p in default.population_configs()] == ["binaries", "triples", "clusters8", "clusters16", "plummer16"]
    single = load_config(None, ["system.params.count=3"])  # the default's system section, populations dropped
    assert single.populations == [] and [p.label for p in single.population_configs()] == ["system"]
    assert single.features == default.features and single.model == default.model
    mixed = load_config(None, ["populations=[{generator: cluster, params: {count: 2, n: 4}}]"])
    assert [p.generator for p in mixed.population_configs()] == ["cluster"]
    with pytest.raises(UserError, match="populations replaces system"):
        load_config(None, ["system.params.count=3", "populations=[{generator: cluster}]"])


def test_set_with_a_mapping_replaces_it() -> None:
    # switching generator must be possible without inheriting the old generator's parameters
    config = load_config(None, ["system.generator=kepler_binary", "system.params={e: 0.9, count: 2}"])
    assert config.system.params == {"e": 0.9, "count": 2}


def test_set_does_not_modify_its_input() -> None:
    data = {"training": {"epochs": 3}}
    apply_overrides(data, ["training.epochs=4"])
    assert data == {"training": {"epochs": 3}}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "override, match",
    [
        ("training.epoch=3", r"unknown config key training\.epoch; did you mean training\.epochs\?"),
        ("trainig.epochs=3", r"unknown config key trainig; did you mean training\?"),
        ("model.hiden=[8]", r"did you mean model\.hidden\?"),
        ("training.energy_treshold=1e-3", r"did you mean training\.energy_threshold\?"),
        ("zzz=1", r"unknown config key zzz \(known: seed, device"),
        ("training.epochs=abc", r"training\.epochs must be of type int, got 'abc'"),
        ("training.epochs=2.5", r"training\.epochs must be of type int"),
        ("training.epochs=true", r"training\.epochs must be of type int"),
        ("training.energy_threshold=small", r"training\.energy_threshold must be of type float"),
        ("training.learning_rate=.inf", r"training\.learning_rate must be a finite number"),
        ("training.learning_rate=.nan", r"training\.learning_rate must be a finite number"),
        ("physics.G=1e400", r"physics\.G must be a finite number"),
        ("model.hidden=[8, x]", r"model\.hidden\[1\] must be of type int"),
        ("model.hidden=8", r"model\.hidden must be of type list"),
        ("system.params=5", r"system\.params must be of type dict"),
        ("training=5", r"config section training must be a mapping"),
        ("training.epochs=0", r"training\.epochs must be >= 1"),
        ("training.steps_per_epoch=0", r"training\.steps_per_epoch must be >= 1"),
        ("training.energy_threshold=0", r"training\.energy_threshold must be > 0"),
        ("training.E_lower=1e-3", r"training\.E_lower must satisfy 0 < E_lower < E_upper"),
        ("training.max_retrain_steps=-1", r"training\.max_retrain_steps must be >= 0"),
        ("training.done_criterion=never", r"training\.done_criterion must be one of floor_and_gate, gate"),
        ("model.activation=sigmoid", r"model\.activation must be one of tanh"),
        ("model.hidden=[]", r"model\.hidden must be a list of sizes >= 1"),
        ("model.init_dt_fraction=2", r"model\.init_dt_fraction must lie strictly between"),
        ("physics.softening=-1", r"physics\.softening must be >= 0"),
        ("features.history_len=0", r"features\.history_len must be >= 1"),
        ("dtype=float16", r"dtype must be one of float64, float32"),
        ("compile=1", r"compile must be of type bool, got 1"),
        ("compile=maybe", r"compile must be of type bool, got 'maybe'"),
        ("device=tpu", r"device must be one of cpu, cuda, auto or cuda:N"),
        ("device=cuda:x", r"device must be one of"),
        ("seed=-1", r"seed must be an integer in \[0, 2\*\*63\)"),
        (f"seed={2**70}", r"seed must be an integer"),
        ("training.epochs.x=1", r"--set training\.epochs\.x: training\.epochs is a value \(150\), not a section"),
        ("training.epochs=", r"--set training\.epochs= has an empty value"),
        ("training.epochs=  ", r"has an empty value"),
        ("training.epochs", r"--set expects section\.key=value"),
        ("=3", r"--set expects section\.key=value"),
        ("training..epochs=3", r"malformed key 'training\.\.epochs'"),
        ("seed=[1, 2", r"--set seed: cannot parse value"),
        ("seed=!!python/object/apply:os.getcwd []", r"--set seed: cannot parse value"),
    ],
)
def test_bad_override_is_one_line_naming_the_key(override: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, match",
    [
        ("training: {epochs: 3\n", r"invalid YAML at line 2, column 1"),
        ("a: 1\n  b: 2\n", r"invalid YAML at line 2"),
        ("- 1\n- 2\n", r"the config must be a YAML mapping, got list"),
        ("just words\n", r"the config must be a YAML mapping, got str"),
        ("seed: 0\n---\nseed: 1\n", r"invalid YAML"),
        ("trainig: {epochs: 3}\n", r"unknown config key trainig; did you mean training\?"),
        ("training: {energy_treshold: 1.0e-4}\n", r"did you mean training\.energy_threshold\?"),
        ("training: {epochs: many}\n", r"training\.epochs must be of type int, got 'many'"),
        ("training: {energy_threshold: -1.0}\n", r"training\.energy_threshold must be > 0"),
        ("training: [1, 2]\n", r"config section training must be a mapping"),
        ("1: 2\n", r"unknown config key 1"),
        ("seed: !!python/object/apply:os.getcwd []\n", r"refused.*python/object/apply:os\.getcwd.*not allowed"),
        ("seed: !!python/name:os.system\n", r"refused.*python/name:os\.system"),
    ],
)
def test_bad_yaml_file_is_one_line_naming_the_file(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=match) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    if "> 0" not in match:  # range errors are checked after the overrides: they name the key only
        assert message.startswith(f"{path}: ")


def test_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"config file not found: .*nope\.yaml"):
        read_yaml(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match=r"cannot read config file .*: Is a directory"):
        read_yaml(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(UserError, match=r"binary\.yaml: not a YAML text file"):
        read_yaml(binary)


def test_checkpoint_configs_are_validated_like_files() -> None:
    data = RunConfig().to_dict()
    assert config_from_dict(data) == RunConfig()
    data["training"]["epochs"] = 0
    with pytest.raises(UserError, match=r"training\.epochs must be >= 1"):
        config_from_dict(data)


def test_the_old_done_criterion_band_is_read_as_floor_and_gate_with_one_warning(tmp_path: Path) -> None:
    old = r"^config key training\.done_criterion: 'band' is deprecated, use 'floor_and_gate' \(the same meaning\)$"
    with pytest.warns(FutureWarning, match=old) as caught:
        via_set = load_config(None, ["training.done_criterion=band"])
    assert len(caught) == 1 and via_set == load_config()  # the default is floor_and_gate
    file = tmp_path / "old.yaml"
    file.write_text("training:\n  done_criterion: band\n")
    with pytest.warns(FutureWarning, match=old) as caught:
        assert load_config(file).training.done_criterion == "floor_and_gate"
    assert len(caught) == 1  # the file is read twice (its own errors, then with overrides), warned about once
    saved = RunConfig().to_dict()  # a checkpoint written before the rename
    saved["training"]["done_criterion"] = "band"
    with pytest.warns(FutureWarning, match=old):
        assert config_from_dict(saved) == RunConfig()
    assert saved["training"]["done_criterion"] == "band"  # the caller's dict is left alone
    with warnings.catch_warnings():  # a checkpoint's own config: read under the new name, silently
        warnings.simplefilter("error")
        assert config_from_dict(saved_config(saved)) == RunConfig()


def test_yaml_numbers_without_a_dot_are_floats() -> None:
    # YAML 1.1 reads 2e-4 as a string; the config must still take it as a number
    assert load_config(None, ["training.energy_threshold=3e-4"]).training.energy_threshold == 3e-4
    assert load_config(None, ["training.epochs=3.0"]).training.epochs == 3


# --------------------------------------------------------------------------- property-based


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
KEYS = st.one_of(
    st.sampled_from(["seed", "device", "dtype", "integrator", "physics", "system", "features", "model", "training",
                     "epochs", "G", "softening", "params", "hidden", "energy_threshold", "E_lower", "count"]),
    st.text(max_size=8),
)
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                         max_leaves=12)


def _loads_or_user_error(load) -> RunConfig | None:
    try:
        config = load()
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        return None
    assert isinstance(config, RunConfig)
    config.validate()
    return config


@PROPERTY
@given(document=st.dictionaries(KEYS, DOCUMENTS, max_size=4))
def test_any_yaml_mapping_is_a_valid_config_or_one_user_error(tmp_path: Path, document: dict) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(document))
    _loads_or_user_error(lambda: load_config(path))


@PROPERTY
@given(text=st.text(max_size=200))
def test_any_text_file_is_a_valid_config_or_one_user_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "random.yaml"
    path.write_bytes(text.encode("utf-8", "replace"))
    _loads_or_user_error(lambda: load_config(path))


@PROPERTY
@given(sets=st.lists(st.text(max_size=40), max_size=4))
def test_any_override_is_applied_or_one_user_error(sets: list[str]) -> None:
    _loads_or_user_error(lambda: load_config(None, sets))


@PROPERTY
@given(
    key=st.sampled_from(["training.epochs", "training.steps_per_epoch", "training.replay_batch_size",
                         "training.max_generalize_iters", "features.history_len", "seed"]),
    value=st.integers(-(2**66), 2**66),
)
def test_integer_keys_are_range_checked(key: str, value: int) -> None:
    section, _, name = key.rpartition(".")
    low = 0 if key in ("training.max_generalize_iters", "seed") else 1
    high = 2**63  # every integer fits in 64 bits
    config = _loads_or_user_error(lambda: load_config(None, [f"{key}={value}"]))
    if low <= value < high:
        assert config is not None
        assert getattr(getattr(config, section) if section else config, name) == value
    else:
        assert config is None


@PROPERTY
@given(
    epochs=st.integers(1, 10**6),
    threshold=st.floats(2e-6, 1.0, allow_nan=False),
    lr=st.floats(1e-8, 10.0, allow_nan=False),
    hidden=st.lists(st.integers(1, 512), min_size=1, max_size=4),
    activation=st.sampled_from(["tanh", "silu", "relu", "gelu"]),
    seed=st.integers(0, 2**63 - 1),
    softening=st.floats(0.0, 1e3, allow_nan=False),
    dtype=st.sampled_from(["float64", "float32"]),
    params=st.dictionaries(st.text(min_size=1, max_size=6), st.integers() | st.floats(allow_nan=False) | st.text(max_size=5), max_size=3),
)
def test_valid_values_survive_set_and_a_yaml_round_trip(
    tmp_path: Path, epochs: int, threshold: float, lr: float, hidden: list[int], activation: str, seed: int,
    softening: float, dtype: str, params: dict,
) -> None:
    sets = [f"training.epochs={epochs}", f"training.energy_threshold={threshold!r}", f"training.learning_rate={lr!r}",
            f"model.hidden={hidden}", f"model.activation={activation}", f"seed={seed}",
            f"physics.softening={softening!r}", f"dtype={dtype}", "system.generator=binary_batch"]
    config = load_config(None, sets)
    assert (config.training.epochs, config.training.energy_threshold, config.training.learning_rate) == (epochs, threshold, lr)
    assert (config.model.hidden, config.model.activation, config.seed) == (hidden, activation, seed)
    assert (config.physics.softening, config.dtype) == (softening, dtype)
    config = dataclasses.replace(config, system=dataclasses.replace(config.system, params=params))
    path = tmp_path / "round.yaml"
    path.write_text(dump_yaml(config))
    assert load_config(path) == config
    assert config_from_dict(config.to_dict()) == config


@PROPERTY
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_float_keys_accept_exactly_the_finite_numbers_in_range(value: float) -> None:
    config = _loads_or_user_error(lambda: load_config(None, [f"physics.G={value!r}"]))
    assert (config is not None) == (math.isfinite(value) and value > 0)
    if config is not None:
        assert config.physics.G == value


@PROPERTY
@given(key=st.text(min_size=1, max_size=20).filter(lambda k: "=" not in k and k.strip()),
       raw=st.text(max_size=20))
def test_parse_override_splits_at_the_first_equals_sign(key: str, raw: str) -> None:
    try:
        path, value = parse_override(f"{key}={raw}")
    except UserError as exc:
        assert "\n" not in str(exc)
        malformed = any(not part.strip() for part in key.split(".")) or not key.isprintable()
        assert malformed or not raw.strip() or "cannot parse" in str(exc)
        return
    assert path == [part.strip() for part in key.strip().split(".")]
    assert raw.strip()
