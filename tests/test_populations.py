"""Training on several populations (config key ``populations``): each keeps its own systems, history
and replay buffer; Part 1 steps all of them, Part 2 draws every minibatch from all of them; metrics
per population; a one-population config is the ``system:`` run; a mixed run resumes exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from aits.config import load_config
from aits.errors import UserError
from aits.training.build import build_trainer
from aits.training.population import split
from aits.training.run import RunDir, load_dataset_into, run_epochs, save_checkpoint, save_dataset
from aits.training.state import trainer_from_checkpoint
from aits.training.trainer import Trainer

# N = 2, 4 and 3 bodies; 6 + 2 + 2 systems
MIXED = ("populations=[{name: binaries, generator: binary_batch, params: {count: 6, e_min: 0.5, e_max: 0.9}},"
         " {name: clusters, generator: cluster, params: {count: 2, n: 4}},"
         " {generator: figure_eight, params: {count: 2}}]")
SMALL = ["training.epochs=4", "training.max_generalize_iters=3", "training.replay_batch_size=20",
         "training.replay_capacity=600", "model.hidden=[16]", "training.checkpoint_every=1"]
NAMES = ["binaries", "clusters", "figure_eight"]


def mixed(*overrides: str) -> Trainer:
    return build_trainer(load_config(None, [MIXED, *SMALL, *overrides]))


def weights(t: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in t.policy.parameters()])


def test_a_mixed_config_trains_every_population_with_its_own_buffer_and_metrics() -> None:
    t = mixed("model.init_dt_fraction=0.3")  # steps large enough to be rejected now and then
    assert [p.name for p in t.populations] == NAMES
    assert [(p.batch, p.bodies) for p in t.populations] == [(6, 2), (2, 4), (2, 3)]
    # replay capacity 600 and minibatch 20 shared in proportion to 6 : 2 : 2
    assert [p.buffer.capacity for p in t.populations] == [360, 120, 120]
    assert split(20, [6, 2, 2]) == [12, 4, 4] and split(7, [1, 1, 1]) == [3, 2, 2] and split(3, [100, 1, 1]) == [1, 1, 1]
    steps = t.config.training.steps_per_epoch
    before = weights(t)
    for _ in range(2):
        m = t.run_epoch()
    assert not torch.equal(before, weights(t))
    assert sum(e["part1"]["rejected"] for e in t.metrics) > 0
    for name, p in zip(NAMES, t.populations):
        p1, p2 = m["part1"]["populations"][name], m["part2"]["populations"][name]
        assert p1["accepted"] == p.batch * steps and p.buffer.size == 2 * p.batch * steps
        assert p1["rel_dE_max"] < t.config.training.energy_threshold
        assert math.isfinite(p1["rel_dE_median"]) and p1["dt_over_tau_median"] > 0
        assert 0 <= p2["pass_rate"] <= 1 and p2["dt_over_tau_median"] > 0 and p2["samples"] == p.buffer.size
        assert int(p.accepted_steps.min()) == 2 * steps  # every system of every population moved
    assert m["part1"]["accepted"] == sum(m["part1"]["populations"][n]["accepted"] for n in NAMES)
    assert m["part1"]["rejected"] == sum(m["part1"]["populations"][n]["rejected"] for n in NAMES)
    assert m["buffer_size"] == sum(p.buffer.size for p in t.populations)


def test_part2_trains_on_every_population_share_of_the_minibatch() -> None:
    """With the 12 : 4 : 4 shares, each iteration evaluates 12 binaries, 4 clusters, 4 figure-eights."""
    t = mixed("training.max_generalize_iters=2", "training.done_criterion=gate", "training.energy_threshold=1e-300",
              "training.E_lower=1e-301", "training.steps_per_epoch=2")
    t.populations[0].buffer.add(*_samples(t, 0, 30))
    t.populations[1].buffer.add(*_samples(t, 1, 3))  # fewer than its share: all 3, each once
    seen: list[tuple[int, int]] = []
    evaluate = t.stepper.evaluate
    t.stepper.evaluate = lambda s, *args: seen.append((s.batch, s.bodies)) or evaluate(s, *args)
    stats = t.generalize()
    assert stats["iterations"] == 2 and not stats["converged"] and stats["pass_rate"] == 0
    assert seen == [(12, 2), (3, 4)] * 2  # the empty third buffer contributes nothing
    assert t.counters.optimizer_steps == 2  # one update per iteration on the combined loss
    assert stats["populations"]["figure_eight"]["samples"] == 0
    assert math.isnan(stats["populations"]["figure_eight"]["pass_rate"])


def _samples(t: Trainer, i: int, k: int) -> tuple:
    p = t.populations[i]
    s = p.systems.index(torch.arange(k) % p.batch)
    return s, t.gravity.energy(s), t.adapter.empty_history(s), torch.full((k,), 1e-3, dtype=torch.float64)


def test_one_population_is_the_system_run_bit_for_bit() -> None:
    system = ["system.generator=binary_batch", "system.params={count: 6, e_min: 0.5, e_max: 0.9}"]
    population = ["populations=[{generator: binary_batch, params: {count: 6, e_min: 0.5, e_max: 0.9}}]"]
    runs = [build_trainer(load_config(None, [*config, *SMALL[1:]])) for config in (system, population)]
    for t in runs:
        for _ in range(2):
            t.run_epoch()
    a, b = runs
    assert a.metrics[-1]["part1"]["accepted"] > 0 and "populations" not in a.metrics[-1]["part1"]
    assert [dict(m, wall_time_s=0) for m in a.metrics] == [dict(m, wall_time_s=0) for m in b.metrics]
    assert torch.equal(weights(a), weights(b))


def test_a_mixed_run_resumed_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = mixed("features.adapter=history", "features.history_len=2")
    run_epochs(straight, RunDir(tmp_path / "a"), 4)
    first = mixed("features.adapter=history", "features.history_len=2")
    run_epochs(first, RunDir(tmp_path / "b"), 2)
    second = trainer_from_checkpoint(save_checkpoint(first, tmp_path / "b" / "half.pt"))
    run_epochs(second, RunDir(tmp_path / "b"), 4)
    assert [dict(m, wall_time_s=0) for m in straight.metrics] == [dict(m, wall_time_s=0) for m in second.metrics]
    assert torch.equal(weights(straight), weights(second))
    for p, q in zip(straight.populations, second.populations):
        assert torch.equal(p.systems.pos, q.systems.pos) and torch.equal(p.history, q.history)
        assert all(torch.equal(x, y) for x, y in zip(p.buffer.data.values(), q.buffer.data.values()))


def test_chunked_mixed_iterations_give_the_whole_iterations_update() -> None:
    whole, chunked = mixed("training.grad_clip=1e9"), mixed("training.grad_clip=1e9", "training.max_chunk_pairs=20")
    for t in (whole, chunked):
        for _ in range(2):
            t.run_epoch()
    # equal to rounding: Aarseth's derivatives summed over other batch shapes, then Adam's normalised steps
    assert torch.allclose(weights(whole), weights(chunked), rtol=1e-7, atol=1e-12)
    assert whole.counters == chunked.counters


def test_a_checkpoint_of_other_populations_is_refused_in_one_line(tmp_path: Path) -> None:
    path = save_checkpoint(mixed(), tmp_path / "mixed.pt")
    other = MIXED.replace("name: clusters", "name: swarm")
    with pytest.raises(UserError, match=r"does not match its config .*populations binaries, clusters, figure_eight, "
                                        r"the config binaries, swarm, figure_eight"):
        trainer_from_checkpoint(path, [other])
    one = "populations=[{name: binaries, generator: binary_batch, params: {count: 2}}]"
    single = save_checkpoint(build_trainer(load_config(None, [one])), tmp_path / "single.pt")
    with pytest.raises(UserError, match="holds one population, the config binaries, clusters, figure_eight"):
        trainer_from_checkpoint(single, [MIXED, "training.replay_batch_size=20"])
    with pytest.raises(UserError, match="populations replaces system"):
        trainer_from_checkpoint(save_checkpoint(build_trainer(load_config(None, ["system.params.count=2"])), tmp_path / "s.pt"),
                                [MIXED])


def test_a_data_set_of_other_populations_is_refused_in_one_line(tmp_path: Path) -> None:
    path = save_dataset(mixed(), tmp_path / "mixed.pt")
    single = build_trainer(load_config(None, ["system.params.count=2"]))
    with pytest.raises(UserError, match="data set does not fit the run .it holds the populations binaries, clusters, "
                                        "figure_eight, the config system"):
        load_dataset_into(single, path)
    load_dataset_into(mixed(), path)  # the run it came from takes it


@pytest.mark.parametrize(("overrides", "message"), [
    (["populations=[{generator: cluster, params: {count: 1}}, {generator: cluster}]"], "names cluster more than once"),
    ([MIXED, "system.params.count=4"], "populations replaces system"),
    ([MIXED, "training.replay_batch_size=2"], "training.replay_batch_size must be at least the number of populations"),
    (["populations=[{generator: cluster, params: {count: 2, size: 3}}]"], r"unknown parameter populations\[0\]\.params\.size"),
    (["populations=[{generator: cluster, colour: red}]"], r"unknown config key populations\[0\]\.colour"),
])
def test_bad_populations_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_trainer(load_config(None, overrides))


def test_compiled_mixed_iterations_match_eager_as_one_graph_per_part(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    import torch._dynamo
    from torch._dynamo.utils import counters

    eager = mixed("training.epochs=2", "model.init_dt_fraction=0.3")
    for _ in range(2):
        eager.run_epoch()
    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    compiled = mixed("training.epochs=2", "model.init_dt_fraction=0.3", "compile=true")
    for _ in range(2):
        compiled.run_epoch()
    assert sum(m["part1"]["rejected"] for m in compiled.metrics) > 0
    for m, n in zip(eager.metrics, compiled.metrics, strict=True):  # the same per-population metrics to rounding
        for part in ("part1", "part2"):
            for name in NAMES:
                a, b = m[part]["populations"][name], n[part]["populations"][name]
                assert a.keys() == b.keys()
                assert all(math.isclose(a[k], b[k], rel_tol=1e-9) or math.isnan(a[k]) and math.isnan(b[k]) for k in a)
    assert torch.allclose(weights(eager), weights(compiled), rtol=1e-7, atol=1e-9)
    assert eager.counters == compiled.counters
    assert counters["stats"]["unique_graphs"] == 2 and not counters["graph_break"]  # all populations in one graph
    torch._dynamo.reset()


def test_each_population_trains_at_its_own_level_and_the_policy_deploys_at_their_mean() -> None:
    t = mixed()
    offsets = t.policy.population_offsets
    assert offsets is not None and offsets.shape == (3,) and not offsets.any()
    t.run_epoch()
    assert offsets.abs().max() > 0  # learned: the populations ask for different levels of dt / tau
    p = t.populations[1]
    with torch.no_grad():
        deployed, _ = t.policy(p.systems, p.history)
        for i in range(3):
            dt, _ = t.policy(p.systems, p.history, i)
            assert torch.allclose(dt / deployed, torch.exp(offsets[i] - offsets.mean()).expand_as(dt), rtol=1e-12)
    assert build_trainer(load_config(None, ["system.params.count=2"])).policy.population_offsets is None


def test_a_mixed_policy_saved_before_the_offsets_loads_with_level_zero() -> None:
    t = mixed()
    state = {k: v for k, v in t.policy.state_dict().items() if k != "population_offsets"}
    fresh = mixed().policy
    fresh.population_offsets.data.fill_(0.5)
    fresh.load_state_dict(state)
    assert not fresh.population_offsets.any()
