"""One batched training step: the policy picks dt, the integrator steps, the energy error is judged
and turned into a per-sample loss. What both Parts evaluate, whatever executes it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from aits.config import TrainingConfig
from aits.interfaces import Integrator, Loss
from aits.model import Policy
from aits.physics import Gravity, Systems
from aits.physics.gravity import relative_energy_error


@dataclass
class StepResult:
    """One batched policy step: what the gate judges and what the loss trains on."""

    new: Systems
    energy: torch.Tensor
    rel_dE: torch.Tensor
    dt: torch.Tensor
    log_ratio: torch.Tensor
    finite: torch.Tensor
    losses: torch.Tensor | None = None  # per sample, from Stepper.evaluate

    @cached_property
    def all_finite(self) -> bool:
        return bool(self.finite.all())

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (*self.new.tensors(), self.energy, self.rel_dE, self.dt, self.log_ratio, self.finite, self.losses)

    @classmethod
    def of(cls, tensors: tuple[torch.Tensor, ...]) -> StepResult:
        """The inverse of :meth:`tensors`."""
        return cls(Systems(*tensors[:5]), *tensors[5:])


class Stepper:
    """The policy, the integrator and the loss of a run: one batched step and its verdicts."""

    def __init__(self, policy: Policy, integrator: Integrator, gravity: Gravity, loss_fn: Loss,
                 training: TrainingConfig) -> None:
        self.policy, self.integrator, self.gravity, self.loss_fn = policy, integrator, gravity, loss_fn
        self.training = training

    def evaluate(self, s: Systems, energy: torch.Tensor, history: torch.Tensor, population: int = 0,
                 cached: tuple[torch.Tensor, torch.Tensor] | None = None) -> StepResult:
        """Predict dt with the deployed policy (at ``population``'s level; from ``cached`` features and
        time scales if given), take one step, measure the relative energy error and the per-sample
        loss, for every system."""
        self.deploy()
        return self.outcome(s, energy, *self.policy(s, history, population, cached))

    def deploy(self) -> None:
        """Eval mode: the gate judges the deployed, deterministic policy."""
        if self.policy.training:
            self.policy.eval()

    def outcome(self, s: Systems, energy: torch.Tensor, dt: torch.Tensor, log_ratio: torch.Tensor) -> StepResult:
        """The step with the policy's ``dt``, its energy error and per-sample loss."""
        r = self.step(s, energy, dt, log_ratio)
        retake = not self.cuts_nonfinite_rows(s) if torch.compiler.is_compiling() else not r.all_finite
        if retake:
            # Retake the step with the graph of the non-finite rows cut, so that their NaN/inf cannot
            # reach the gradients (compiled: branch-free, unless the integrator's gradient cuts them).
            r = self.step(s, energy, torch.where(r.finite, dt, dt.detach()), log_ratio)
        r.new, r.energy, r.dt = r.new.detach(), r.energy.detach(), r.dt.detach()  # only what a loss reads keeps its graph
        r.losses = self.sample_losses(r)
        return r

    def cuts_nonfinite_rows(self, s: Systems) -> bool:
        """Whether the integrator's gradient is zero on the rows of ``s`` whose step is not finite."""
        return self.integrator.cuts_nonfinite_rows and not any(t.requires_grad for t in s.tensors())

    def step(self, s: Systems, energy: torch.Tensor, dt: torch.Tensor, log_ratio: torch.Tensor) -> StepResult:
        """The physics of one step (integrator, then the energy error) and whether it stayed finite."""
        new, e_new = self.integrator.step_with_energy(s, dt, self.gravity)
        rel = relative_energy_error(e_new, energy)
        finite = torch.isfinite(rel) & torch.isfinite(new.pos).all((1, 2)) & torch.isfinite(new.vel).all((1, 2))
        return StepResult(new, e_new, rel, dt, log_ratio, finite)

    def sample_losses(self, r: StepResult) -> torch.Tensor:
        """Per-sample loss; a non-finite step costs a bounded penalty that pushes its dt down. Eagerly
        an all-finite batch skips the penalty; compiled, it is computed branch-free (and fused)."""
        if not torch.compiler.is_compiling() and r.all_finite:
            return self.loss_fn(r.rel_dE, self.training)
        safe = torch.where(r.finite, r.rel_dE, torch.ones_like(r.rel_dE))
        push_down = torch.where(torch.isfinite(r.log_ratio), r.log_ratio - r.log_ratio.detach(), 0.0)
        penalty = self.training.nonfinite_penalty * (1 + push_down)
        return torch.where(r.finite, self.loss_fn(safe, self.training), penalty)

    def passes_gate(self, r: StepResult) -> torch.Tensor:
        """Part 1's energy gate per sample: finite and under ``energy_threshold``."""
        return r.finite & (r.rel_dE < self.training.energy_threshold)

    def done(self, r: StepResult) -> tuple[torch.Tensor, torch.Tensor]:
        """Part 2's verdict per sample: (done, within the gate)."""
        gate = self.passes_gate(r)
        return (gate & (r.rel_dE >= self.training.E_lower) if self.training.done_criterion == "floor_and_gate" else gate), gate
