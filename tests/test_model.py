"""The policy network's outputs: a bounded policy stays within its factor of the free-fall rule on
any input and clamps features to the range seen in training; old (free) checkpoints still load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from aits import checkpoint
from aits.config import ModelConfig
from aits.errors import UserError
from aits.model import Policy
from aits.physics import Gravity
from aits.physics.initial import cluster, kepler_binary
from aits.registry import get_registry
from aits.training.build import build_trainer
from aits.training.run import save_checkpoint
from aits.training.state import checkpoint_payload, load_policy
from conftest import small_config


def policy(std: float = 30.0, **model: object) -> Policy:
    """An untrained policy whose output layer has weights of ``std`` (30: it answers wildly)."""
    torch.manual_seed(0)
    adapter = get_registry().get("features", "analytic")(Gravity())
    net = Policy(adapter, ModelConfig(**model)).double().eval()
    torch.nn.init.normal_(net.net.body[-1].weight, std=std)
    return net


@torch.no_grad()
def test_a_bounded_policy_stays_within_its_factor_of_the_base_whatever_the_input() -> None:
    net = policy(output="bounded", max_correction=2.5)
    base = float(net.net.log_base)
    features = 1e3 * torch.randn(4096, net.adapter.dim, dtype=torch.float64)
    log_ratio = net.net(features)
    assert float(log_ratio.min()) >= base - math.log(2.5) - 1e-12
    assert float(log_ratio.max()) <= base + math.log(2.5) + 1e-12
    assert float(log_ratio.max() - log_ratio.min()) > 1.5  # and it does use the room it has
    free = policy(output="free")
    assert float(free.net(features).max() - free.net(features).min()) > 5  # a free one swings far wider


@torch.no_grad()
def test_a_bounded_policy_answers_unfamiliar_states_as_the_edge_of_the_familiar_ones() -> None:
    net = policy(0.3, output="bounded")
    gravity = Gravity()
    binaries = gravity.initialise(*kepler_binary(G=1.0, rng=None, e=0.6, count=1))
    clusters = gravity.initialise(*cluster(G=1.0, rng=torch.Generator().manual_seed(0), count=16, n=8))
    history = net.adapter.empty_history(clusters)
    raw = net.adapter.features(clusters, history)
    unclamped = net(clusters, history)[1]
    net.observe(binaries, net.adapter.empty_history(binaries))  # trained on one binary state only
    torch.testing.assert_close(net.feature_lo, net.feature_hi)
    clamped = net(clusters, history)[1]
    torch.testing.assert_close(clamped, net.net(net.feature_lo.expand_as(raw)))
    assert not torch.allclose(clamped, unclamped)
    net.observe(clusters, history)  # once seen, cluster states pass unchanged
    torch.testing.assert_close(net(clusters, history)[1], unclamped)


def test_the_feature_range_is_learned_in_training_and_saved_with_the_weights(tmp_path: Path) -> None:
    trainer = build_trainer(small_config("training.epochs=1"))
    trainer.run_epoch()
    lo, hi = trainer.policy.feature_lo, trainer.policy.feature_hi
    assert (lo <= hi).all() and torch.isfinite(lo).all() and float((hi - lo)[0]) > 0
    loaded = load_policy(save_checkpoint(trainer, tmp_path / "model.pt"), Gravity())
    torch.testing.assert_close(loaded.feature_lo, lo.double())
    torch.testing.assert_close(loaded.feature_hi, hi.double())


def test_a_checkpoint_of_an_older_aits_loads_as_the_free_policy_it_was(tmp_path: Path) -> None:
    trainer = build_trainer(small_config("training.epochs=1", "model.output=free"))
    trainer.run_epoch()
    data = checkpoint_payload(trainer)
    del data["config"]["model"]["output"], data["config"]["model"]["max_correction"]  # as older versions wrote it
    path = checkpoint.save(tmp_path / "model.pt", "checkpoint", data)
    loaded = load_policy(path, Gravity())
    assert not loaded.net.bounded
    s = trainer.population.systems
    torch.testing.assert_close(loaded(s, loaded.adapter.empty_history(s))[0],
                               trainer.policy(s, trainer.adapter.empty_history(s))[0])


def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_refused_in_one_line(tmp_path: Path) -> None:
    trainer = build_trainer(small_config("training.epochs=1", "model.output=free"))
    data = checkpoint_payload(trainer)
    data["config"]["model"]["output"] = "bounded"
    path = checkpoint.save(tmp_path / "model.pt", "checkpoint", data)
    with pytest.raises(UserError, match="cannot rebuild its policy") as err:
        load_policy(path, Gravity())
    assert "\n" not in str(err.value)
