"""The two-phase training core: gate, retries, history, replay, generalisation, reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from aits.physics.derivatives import aarseth_time
from aits.training.buffer import ReplayBuffer
from aits.training.build import build_trainer
from aits.training.part1 import RetrainCapHit
from aits.training.run import RunDir, run_epochs, save_checkpoint
from aits.training.state import trainer_from_checkpoint
from aits.training.trainer import Trainer
from conftest import small_config

ECCENTRIC = ["system.generator=kepler_binary", "system.params={e: 0.9, count: 2}"]


def test_bad_initial_policy_is_rejected_then_accepted_after_retraining():
    # an untrained policy stepping half the free-fall time at pericentre of an e=0.9 orbit fails the gate
    trainer = build_trainer(small_config(*ECCENTRIC, "model.init_dt_fraction=0.5", "training.steps_per_epoch=3"))
    stats = trainer.collect()
    assert stats["rejected"] > 0 and stats["retrain_iters"] > 0
    assert stats["accepted"] == 2 * 3
    assert stats["rel_dE_max"] < trainer.config.training.energy_threshold
    assert stats["dt_over_tau_median"] < 0.5


def test_untrained_policy_starts_from_the_configured_fraction_of_its_time_scale():
    trainer = build_trainer(small_config("model.init_dt_fraction=0.03", "features.adapter=analytic"))
    s = trainer.population.systems
    dt, _ = trainer.policy(s, trainer.population.history)
    tau = trainer.gravity.freefall_time(s.pos, s.mass)
    assert torch.allclose(dt / tau, torch.full_like(dt, 0.03), rtol=0.02)
    trainer = build_trainer(small_config("model.init_dt_fraction=0.03"))  # the default: Aarseth's time scale
    dt, _ = trainer.policy(s, trainer.population.history)
    assert torch.allclose(dt / aarseth_time(s.pos, s.vel, s.mass, trainer.gravity), torch.full_like(dt, 0.03), rtol=0.02)


def test_retrain_cap_stops_with_an_error_and_a_checkpoint(tmp_path):
    trainer = build_trainer(small_config(*ECCENTRIC, "model.init_dt_fraction=0.9", "training.max_retrain_steps=2"))
    run = RunDir(tmp_path)
    with pytest.raises(RetrainCapHit, match="max_retrain_steps"):
        run_epochs(trainer, run, 1)
    saved = list((tmp_path / "checkpoints").glob("*.pt"))
    assert len(saved) == 1 and trainer_from_checkpoint(saved[0]).epoch == 0


def test_history_is_zero_padded_and_warm_up_steps_are_not_recorded():
    trainer = build_trainer(small_config("features.adapter=history", "features.history_len=3", "training.steps_per_epoch=5"))
    assert trainer.population.history.shape == (8, 3, trainer.adapter.memory_dim)
    assert not trainer.population.history.any()  # zero-padded, not copies of the first state
    stats = trainer.collect()
    assert stats["accepted"] == 8 * 5
    assert stats["recorded"] == trainer.population.buffer.size == 8 * (5 - 3)
    windows = trainer.population.buffer.data["history"][: trainer.population.buffer.size]
    assert windows.abs().sum(-1).gt(0).all(), "recorded samples come after warm-up: full windows"
    # the next epoch records every step
    assert trainer.collect()["recorded"] == 8 * 5


def test_part2_uses_each_samples_own_history_window():
    trainer = build_trainer(small_config("features.adapter=history", "features.history_len=2", "training.steps_per_epoch=4"))
    trainer.collect()
    trainer.population.history.fill_(float("nan"))  # the live history must play no part in Part 2
    buffer = trainer.population.buffer
    s, _, history, (features, tau) = buffer.gather(torch.arange(buffer.size))
    assert history.shape[1:] == (2, trainer.adapter.memory_dim) and torch.isfinite(history).all()
    own = trainer.adapter.features_and_timescale(s, history)  # each sample's features, from its own window
    assert torch.equal(features, own[0]) and torch.equal(tau, own[1])
    seen = []
    net = trainer.policy.net.forward  # the network's input in Part 2: the stored features
    trainer.policy.net.forward = lambda x: seen.append(x.detach().clone()) or net(x)
    trainer.generalize()
    assert seen
    for batch in seen:
        assert torch.isfinite(batch).all()
        assert (torch.cdist(batch, features).min(1).values == 0).all()


def test_stored_features_are_saved_and_recomputed_for_a_buffer_saved_without_them():
    trainer = build_trainer(small_config("training.steps_per_epoch=4"))
    trainer.collect()
    state = trainer.population.buffer_state()
    assert {"features", "timescale"} <= set(state)
    for saved in (state, {k: v for k, v in state.items() if k not in ("features", "timescale")}):  # now; older aits
        fresh = build_trainer(small_config("training.steps_per_epoch=4"))
        fresh.population.load_buffer(saved)
        buffer = fresh.population.buffer
        s, _, history, (features, tau) = buffer.gather(torch.arange(buffer.size))
        if "features" in saved:
            assert torch.equal(features, state["features"]) and torch.equal(tau, state["timescale"])
        want = fresh.adapter.features_and_timescale(s, history)
        torch.testing.assert_close(features, want[0], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(tau, want[1], rtol=1e-12, atol=0)


def test_replay_buffer_keeps_the_newest_samples_up_to_its_capacity():
    buffer = ReplayBuffer(10, bodies=2, dims=3, history_len=0, memory_dim=0, dtype=torch.float64, device=torch.device("cpu"))
    trainer = build_trainer(small_config())
    for start in range(0, 25, 5):
        s = trainer.population.systems.index(slice(0, 5))
        buffer.add(s, torch.zeros(5, dtype=torch.float64), torch.zeros(5, 0, 0, dtype=torch.float64),
                   torch.arange(start, start + 5, dtype=torch.float64))
    assert buffer.size == 10
    assert sorted(buffer.data["dt"].tolist()) == list(range(15, 25))
    assert len(buffer.indices(100, torch.Generator().manual_seed(0)).unique()) == 10  # never more than it holds


def test_padded_samples_have_a_fixed_count_with_the_distinct_samples_first():
    buffer = ReplayBuffer(10, bodies=2, dims=3, history_len=0, memory_dim=0, dtype=torch.float64, device=torch.device("cpu"))
    s = build_trainer(small_config()).population.systems.index(slice(0, 3))
    buffer.add(s, torch.arange(3, dtype=torch.float64), torch.zeros(3, 0, 0, dtype=torch.float64),
               torch.zeros(3, dtype=torch.float64))
    plain, energy, _, _ = buffer.gather(buffer.indices(8, torch.Generator().manual_seed(0)))
    padded, padded_energy, _, _ = buffer.gather(buffer.indices(8, torch.Generator().manual_seed(0), pad=True))
    assert plain.batch == 3 and padded.batch == 8
    assert torch.equal(padded_energy[:3], energy)  # the same draw, then repeats of it
    assert sorted(padded_energy[:3].tolist()) == [0, 1, 2] and set(padded_energy.tolist()) == {0, 1, 2}


def test_part2_converges_on_a_small_data_set():
    trainer = build_trainer(small_config("training.steps_per_epoch=4", "training.max_generalize_iters=400",
                                   "training.replay_batch_size=32"))
    trainer.collect()
    stats = trainer.generalize()
    assert stats["converged"] and stats["pass_rate"] == 1.0
    assert stats["iterations"] < 400


def test_band_criterion_corrects_a_timid_policy_that_the_gate_alone_accepts():
    timid = ["model.init_dt_fraction=1e-4", "training.steps_per_epoch=2", "training.max_generalize_iters=50"]
    gate_only = build_trainer(small_config(*timid, "training.done_criterion=gate"))
    gate_only.collect()
    assert gate_only.generalize()["iterations"] == 1  # every tiny step passes the gate at once
    band = build_trainer(small_config(*timid))
    band.collect()
    stats = band.generalize()
    assert stats["iterations"] > 1
    assert stats["dt_over_tau_median"] > 2e-4  # the band loss pushed dt up


def test_no_autograd_graph_survives_between_steps():
    trainer = build_trainer(small_config("system.params.count=4", "training.steps_per_epoch=500", "training.max_generalize_iters=1"))
    trainer.run_epoch()
    carried = [*trainer.population.systems.tensors(), trainer.population.energy, trainer.population.history, *trainer.population.buffer.data.values()]
    assert all(t.grad_fn is None and not t.requires_grad for t in carried)
    assert trainer.metrics[-1]["part1"]["accepted"] == 2000


def _weights(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])


def _without_time(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "wall_time_s"} for m in metrics]


def test_same_seed_same_run_and_other_seed_other_run():
    runs = [build_trainer(small_config(f"seed={seed}")) for seed in (3, 3, 4)]
    for trainer in runs:
        for _ in range(2):
            trainer.run_epoch()
    assert torch.equal(_weights(runs[0]), _weights(runs[1]))
    assert _without_time(runs[0].metrics) == _without_time(runs[1].metrics)
    assert not torch.equal(_weights(runs[0]), _weights(runs[2]))


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    config = ["training.epochs=4", "features.adapter=history", "features.history_len=2", "training.steps_per_epoch=3"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = build_trainer(small_config(*config))
    run_epochs(straight, RunDir(tmp_path / "a"), 4)

    first = build_trainer(small_config(*config))
    run_epochs(first, RunDir(tmp_path / "b"), 2)
    path = save_checkpoint(first, tmp_path / "b" / "half.pt")
    second = trainer_from_checkpoint(path)
    assert second.epoch == 2 and second.population.buffer.size == first.population.buffer.size
    run_epochs(second, RunDir(tmp_path / "b"), 4)

    assert torch.equal(_weights(straight), _weights(second))
    assert _without_time(straight.metrics) == _without_time(second.metrics)
    assert torch.equal(straight.population.systems.pos, second.population.systems.pos)


def test_training_on_a_three_body_system_runs_and_stays_finite():
    trainer = build_trainer(small_config("system.generator=figure_eight", "system.params={count: 4}",
                                   "training.steps_per_epoch=5"))
    metrics = trainer.run_epoch()
    assert metrics["part1"]["accepted"] == 20
    assert torch.isfinite(_weights(trainer)).all()
    assert math.isfinite(metrics["part2"]["pass_rate"])


def _metrics_close(a: list[dict], b: list[dict]) -> bool:
    def close(x: object, y: object) -> bool:
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x if k != "wall_time_s")
        if isinstance(x, float):
            return math.isclose(x, y, rel_tol=1e-9) or (math.isnan(x) and math.isnan(y))
        return x == y

    return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))


def test_chunked_iterations_bound_the_pairs_evaluated_at_once_and_give_the_same_training():
    """A batch over training.max_chunk_pairs is evaluated chunk by chunk with the gradients summed:
    the same updates to rounding, Part 1 retraining and Part 2 included."""
    # no clipping, so that the summed gradient is compared as it is (Adam alone hides a constant factor)
    config = ["system.params.count=10", "model.init_dt_fraction=0.3", "training.replay_batch_size=16",
              "training.grad_clip=1e9"]
    whole = build_trainer(small_config(*config))
    chunked = build_trainer(small_config(*config, "training.max_chunk_pairs=12"))  # 3 two-body systems per chunk
    sizes = []
    evaluate = chunked.stepper.evaluate
    chunked.stepper.evaluate = lambda s, *args, **kw: sizes.append(s.batch) or evaluate(s, *args, **kw)
    for trainer in (whole, chunked):
        for _ in range(2):
            trainer.run_epoch()
    assert max(sizes) == 3 and sum(m["part1"]["rejected"] for m in whole.metrics) > 0
    assert _metrics_close(whole.metrics, chunked.metrics), (whole.metrics, chunked.metrics)
    assert torch.allclose(_weights(whole), _weights(chunked), rtol=1e-9, atol=1e-12)
    assert whole.counters == chunked.counters


def test_chunked_part2_gradient_is_the_whole_minibatch_gradient():
    # a timid policy: every sample below E_lower, none done, so both take their optimizer step
    config = ["model.init_dt_fraction=1e-4", "training.steps_per_epoch=2", "training.grad_clip=1e9"]
    whole, chunked = build_trainer(small_config(*config)), build_trainer(small_config(*config, "training.max_chunk_pairs=20"))
    for trainer in (whole, chunked):
        trainer.collect()
    idx = whole.population.buffer.indices(16, torch.Generator().manual_seed(0))
    for trainer in (whole, chunked):
        assert trainer.executors.run(trainer.generalize_rule, [trainer.population.replay(idx, 16)]).totals[1] == 0
    assert torch.allclose(whole.optimizer.grad, chunked.optimizer.grad, rtol=1e-9, atol=1e-15)


def test_zero_generalize_iterations_skip_part2():
    trainer = build_trainer(small_config("training.max_generalize_iters=0"))
    part2 = trainer.run_epoch()["part2"]
    assert part2["iterations"] == 0 and not part2["converged"] and math.isnan(part2["dt_over_tau_median"])
    assert trainer.counters.optimizer_steps == 0  # the default policy passes the gate: no Part 1 retraining
