"""The config key ``compile``: the compiled training step gives the eager run's results to rounding,
as one graph without breaks, and falls back to eager with a one-line warning when compiling fails.

The suite compiles with the ``aot_eager`` backend (dynamo + AOT autograd, seconds); set
``AITS_TEST_COMPILE=1`` to also run the real inductor backend (a C++ compile, ~30 s on 2 cores).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable

import pytest
import torch
import torch._dynamo
from torch._dynamo.backends.registry import lookup_backend
from torch._dynamo.utils import counters

from aits.builtin.integrators import Leapfrog
from aits.interfaces import Integrator
from aits.physics import Gravity, Systems
from aits.training import part1
from aits.training.build import build_trainer
from aits.training.trainer import Trainer
from conftest import small_config

# 8 systems in Part 1 and minibatches of 8 in Part 2: one shape, so one graph to compile
TINY = ["model.hidden=[8]", "training.replay_batch_size=8", "model.init_dt_fraction=0.3"]
BACKENDS = ["aot_eager", pytest.param("inductor", marks=pytest.mark.skipif(
    os.environ.get("AITS_TEST_COMPILE") != "1", reason="set AITS_TEST_COMPILE=1 to compile with inductor"))]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def with_backend(monkeypatch: pytest.MonkeyPatch, backend: str | Callable) -> None:
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend))


def run(*overrides: str, epochs: int = 2) -> Trainer:
    trainer = build_trainer(small_config(*TINY, *overrides))
    for _ in range(epochs):
        trainer.run_epoch()
    return trainer


def weights(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])


def assert_same_run(a: Trainer, b: Trainer, exact: bool = False) -> None:
    """Same counts; the same numbers to rounding (``exact``: bit for bit)."""
    def same(x: object, y: object) -> bool:
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x if k != "wall_time_s")
        if isinstance(x, float) and not exact:
            return math.isclose(x, y, rel_tol=1e-9) or (math.isnan(x) and math.isnan(y))
        return x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))

    assert all(same(x, y) for x, y in zip(a.metrics, b.metrics, strict=True)), (a.metrics, b.metrics)
    if exact:
        assert torch.equal(weights(a), weights(b))
    else:
        # compiled, powers and tanh are written otherwise (equal to rounding); Adam amplifies that a little
        assert torch.allclose(weights(a), weights(b), rtol=1e-7, atol=1e-9)
    assert a.counters == b.counters


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("extra", [[], ["features.adapter=history", "features.history_len=2",
                                        "training.replay_batch_size=64"]], ids=["analytic", "history-padded"])
def test_compiled_training_matches_eager_as_one_graph(monkeypatch: pytest.MonkeyPatch, backend: str,
                                                      extra: list[str]) -> None:
    eager = run(*extra)
    with_backend(monkeypatch, backend)
    compiled = run(*extra, "compile=true")
    assert_same_run(eager, compiled)
    assert sum(m["part1"]["rejected"] for m in compiled.metrics) > 0  # the retrain path ran too
    assert not counters["graph_break"]
    # fixed shapes: one graph for Part 1's step, one for the whole Part 2 iteration; with history,
    # Part 2's 16 and then 32 samples are padded to the minibatch of 64, not a graph per size
    assert counters["stats"]["unique_graphs"] == 2


def test_compiled_iteration_cuts_the_gradient_of_nonfinite_rows_without_a_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row 0's step is always NaN: the compiled Part 1 iteration (both steps taken, branch-free) and
    the eager one (the step retaken only when a row failed) give the same penalty, counters and finite
    update."""
    leapfrog = Leapfrog()

    def broken(s: Systems, dt: torch.Tensor, gravity: Gravity) -> Systems:
        new = leapfrog.step(s, dt, gravity)
        row0 = (torch.arange(s.batch, device=dt.device) == 0)[:, None, None]
        return new.with_(pos=new.pos * torch.where(row0, math.inf, 1.0))  # still a function of dt

    results = []
    for compile_ in (False, True):
        with_backend(monkeypatch, "aot_eager")
        trainer = build_trainer(small_config(*TINY, f"compile={compile_}"))
        monkeypatch.setattr(trainer.integrator, "step", broken)
        # training steps through step_with_energy: its autograd default, which calls the spoiled step
        monkeypatch.setattr(trainer.integrator, "step_with_energy",
                            functools.partial(Integrator.step_with_energy, trainer.integrator))
        monkeypatch.setattr(trainer.integrator, "cuts_nonfinite_rows", False)
        active = torch.ones(trainer.population.systems.batch, dtype=torch.bool)
        (r,), _ = part1.iteration(trainer, [active])
        results.append((r, weights(trainer), trainer.counters))
    (a, weights_a, counted_a), (b, weights_b, counted_b) = results
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert a.finite.tolist() == b.finite.tolist() == [False] + [True] * 7
    assert float(b.losses[0]) == small_config().training.nonfinite_penalty
    assert torch.allclose(a.losses, b.losses, rtol=1e-12)
    assert bool(torch.isfinite(weights_b).all()) and torch.allclose(weights_a, weights_b, rtol=1e-9, atol=1e-15)
    assert counted_a == counted_b and counted_b.nonfinite_steps == 1 and counted_b.optimizer_steps == 1


def test_compiled_iteration_takes_the_closed_form_step_once_and_its_gradient_cuts_nonfinite_rows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The leapfrog's closed-form gradient is zero on a row whose step is not finite (row 0's dt made
    inf: its cotangent and derivative are NaN), so the compiled iteration takes the step once (the
    autograd default: twice) and gives the eager run's penalty, counters and finite update."""
    steps = []  # per graph compiled: the closed-form steps (autograd.Function applications) in it

    def counting(gm: torch.fx.GraphModule, example_inputs: list, **options: object) -> Callable:
        steps.append(sum("autograd_function_apply" in str(node.target) for node in gm.graph.nodes))
        return lookup_backend("aot_eager")(gm, example_inputs)

    results = []
    for compile_ in (False, True):
        with_backend(monkeypatch, counting)
        trainer = build_trainer(small_config(*TINY, f"compile={compile_}"))
        policy = trainer.policy.forward

        def spoiled(s: Systems, history: torch.Tensor, population: int | None = None,
                    cached: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            dt, log_ratio = policy(s, history, population, cached)
            return dt + torch.where(torch.arange(s.batch) == 0, math.inf, 0.0), log_ratio

        monkeypatch.setattr(trainer.policy, "forward", spoiled)
        active = torch.ones(trainer.population.systems.batch, dtype=torch.bool)
        (r,), _ = part1.iteration(trainer, [active])
        results.append((r, weights(trainer), trainer.counters))
    (a, weights_a, counted_a), (b, weights_b, counted_b) = results
    assert steps and set(steps) == {1} and counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert a.finite.tolist() == b.finite.tolist() == [False] + [True] * 7
    assert float(b.losses[0]) == small_config().training.nonfinite_penalty
    assert torch.allclose(a.losses, b.losses, rtol=1e-12)
    assert bool(torch.isfinite(weights_b).all()) and torch.allclose(weights_a, weights_b, rtol=1e-9, atol=1e-15)
    assert counted_a == counted_b and counted_b.nonfinite_steps == 1 and counted_b.optimizer_steps == 1


def _raise_at_compile(fn, **kwargs):
    raise RuntimeError("no C++ compiler found\nsecond line")


def _raise_at_call(fn, **kwargs):
    def compiled(*args):
        raise RuntimeError("InductorError: compilation of the kernels failed\nsecond line")
    return compiled


@pytest.mark.parametrize("failing", [_raise_at_compile, _raise_at_call], ids=["at-compile", "at-first-call"])
def test_a_failed_compilation_falls_back_to_eager_with_a_one_line_warning(monkeypatch: pytest.MonkeyPatch,
                                                                          failing) -> None:
    eager = run()
    monkeypatch.setattr(torch, "compile", failing)
    with pytest.warns(RuntimeWarning, match=r"compile: torch\.compile failed \(RuntimeError: .*\); "
                                            r"training runs eagerly") as caught:
        fallen_back = run("compile=true")
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert_same_run(eager, fallen_back, exact=True)


@pytest.mark.parametrize("case", ["all-done", "nonfinite-gradient"])
def test_compiled_part2_skips_the_update_where_eager_does(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """The compiled Part 2 iteration computes its update in the graph and applies it only where the
    eager loop would step: not on a minibatch whose samples are all done, nor on a non-finite gradient."""
    with_backend(monkeypatch, "aot_eager")
    extra = ["training.energy_threshold=1e300", "training.done_criterion=gate"] if case == "all-done" else []
    for compile_ in ("false", "true"):
        trainer = build_trainer(small_config(*TINY, f"compile={compile_}", "training.max_generalize_iters=3", *extra))
        trainer.collect()
        if case == "nonfinite-gradient":  # zero loss, infinite gradient, and no sample ever done
            monkeypatch.setattr(trainer.stepper, "loss_fn", lambda rel_dE, config: (rel_dE - rel_dE.detach()).sqrt())
            never = dataclasses.replace(trainer.config.training, energy_threshold=1e-290, E_lower=1e-300)
            trainer.stepper.training = never
        before = [t.clone() for t in (trainer.optimizer.flat, trainer.optimizer.exp_avg, trainer.optimizer.exp_avg_sq)]
        steps = trainer.counters.optimizer_steps, trainer.optimizer.steps
        stats = trainer.generalize()
        assert stats["iterations"] == (1 if case == "all-done" else 3)
        assert stats["converged"] == (case == "all-done")
        after = (trainer.optimizer.flat, trainer.optimizer.exp_avg, trainer.optimizer.exp_avg_sq)
        assert all(torch.equal(a, b) for a, b in zip(before, after))
        assert (trainer.counters.optimizer_steps, trainer.optimizer.steps) == steps


def test_compiled_resume_from_a_checkpoint_equals_an_uninterrupted_compiled_run(monkeypatch: pytest.MonkeyPatch,
                                                                               tmp_path) -> None:
    from aits.training.run import RunDir, run_epochs, save_checkpoint
    from aits.training.state import trainer_from_checkpoint

    with_backend(monkeypatch, "aot_eager")
    config = [*TINY, "compile=true", "training.epochs=4"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = build_trainer(small_config(*config))
    run_epochs(straight, RunDir(tmp_path / "a"), 4)
    first = build_trainer(small_config(*config))
    run_epochs(first, RunDir(tmp_path / "b"), 2)
    second = trainer_from_checkpoint(save_checkpoint(first, tmp_path / "b" / "half.pt"))
    run_epochs(second, RunDir(tmp_path / "b"), 4)
    assert straight.metrics[-1]["optimizer_steps"] > straight.metrics[1]["optimizer_steps"]  # steps after the resume
    assert_same_run(straight, second, exact=True)
    assert second.optimizer.steps == straight.optimizer.steps
