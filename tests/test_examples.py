"""The shipped example files: every training config loads and the default (general) recipe trains an
epoch with every population; every problem of the reference set builds its system."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from aits.config import load_config
from aits.simulation.setup import make_setup
from aits.training.build import build_trainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TRAINING = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name not in ("problems.yaml", "sweep.yaml"))


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_every_example_config_loads(path: Path) -> None:
    load_config(path)


def test_the_default_recipe_trains_on_every_population() -> None:
    config = load_config(None, ["training.epochs=1", "training.max_generalize_iters=1"])
    assert len(config.populations) == 5 and config.features.adapter == "analytic_aarseth"
    metrics = build_trainer(config).run_epoch()
    assert set(metrics["part1"]["populations"]) == {p.label for p in config.populations}
    assert all(m["accepted"] > 0 for m in metrics["part1"]["populations"].values())


def test_every_reference_problem_builds_its_system() -> None:
    spec = importlib.util.spec_from_file_location("run_problems", EXAMPLES / "run_problems.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    problems, targets = runner.load_problems(EXAMPLES / "problems.yaml", None)
    assert targets and {"kepler_e0.5_100_orbits", "hierarchical_triple", "planetary_system"} <= set(problems)
    for name in ("cluster_n8", "cluster_n16", "cluster_n32"):
        assert len(runner.realisations(problems[name])) >= 10
    for problem in problems.values():
        setup, info = make_setup(problem["system"], problem.get("params"), seed=runner.realisations(problem)[-1],
                                 periods=problem.get("periods"), time=problem.get("time"))
        assert info.t_end > 0 and setup.systems.batch == 1
