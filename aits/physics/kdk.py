"""The kick-drift-kick leapfrog step, and its energy with a closed-form derivative with respect to
the step size.

For one step of size h from (x0, v0, a0):
    v½ = v0 + h a0 / 2,   x1 = x0 + h v½,   a1 = a(x1),   v1 = v½ + h a1 / 2,
    dx1/dh = v½ + h a0 / 2,   da1/dh = (∂a/∂x)(x1) · dx1/dh,   dv1/dh = (a0 + a1) / 2 + (h / 2) da1/dh,
    dE1/dh = Σ m v1 · dv1/dh − Σ m a1 · dx1/dh.
The whole derivative of a step's outputs with respect to h costs one more sum over the pairs,
da1/dh (the shape of a jerk), taken in the same pass as the forces and the energy; reverse mode
through the pair tensors costs several passes and keeps (B, N, N, D) tensors alive until the
backward pass. :func:`step_with_energy` returns the step and its energy as functions of ``dt``
whose backward is this closed form: only (B, N, D) tensors are kept.
"""

from __future__ import annotations

from functools import partial

import torch

from aits.physics.blocks import in_blocks
from aits.physics.gravity import Gravity, dot, kinetic_energy
from aits.physics.state import Systems


def kick_drift(pos: torch.Tensor, vel: torch.Tensor, acc: torch.Tensor,
               dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first half kick and the drift: (dt broadcast, half-step velocities, end positions)."""
    h = dt[:, None, None]
    half_kicked = vel + 0.5 * h * acc
    return h, half_kicked, pos + h * half_kicked


def kdk(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, acc: torch.Tensor, dt: torch.Tensor,
        gravity: Gravity) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One kick-drift-kick step of size ``dt`` (B,): new positions, velocities and accelerations."""
    h, half_kicked, pos1 = kick_drift(pos, vel, acc, dt)
    acc1 = gravity.accelerations(pos1, mass)
    return pos1, half_kicked + 0.5 * h * acc1, acc1


def step_energy_and_derivatives(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, acc: torch.Tensor,
                                dt: torch.Tensor, gravity: Gravity) -> tuple[torch.Tensor, ...]:
    """A KDK step, its energy and their derivatives with respect to ``dt``, from one pass over the
    pairs at the end positions: ``(pos1, vel1, acc1, E1)`` (equal bit for bit to :func:`kdk` and
    :meth:`Gravity.energy`) and ``(dpos1, dvel1, dacc1, dE1)`` per unit of dt.

    ``dacc1 = sum_j w_ij (u_ij - 3 (r_ij . u_ij) r_ij / r^2)`` with the pair weights ``w_ij = G m_j / r^3``
    of the accelerations, ``u = dpos1`` and ``r_ij = x_j - x_i``, softened as the forces are."""
    h, half_kicked, pos1 = kick_drift(pos, vel, acc, dt)
    dx, r2 = gravity.separations(pos1)
    weights, r2 = gravity.pair_weights(r2, mass)
    acc1 = (weights[..., None] * dx).sum(2)
    vel1 = half_kicked + 0.5 * h * acc1
    energy = kinetic_energy(vel1, mass) + gravity.pair_potential(r2, mass)
    dpos = vel + h * acc
    du = dpos[:, None, :, :] - dpos[:, :, None, :]
    radial = 3 * weights * dot(dx, du) / r2
    dacc = (weights[..., None] * du).sum(2) - (radial[..., None] * dx).sum(2)
    dvel = 0.5 * (acc + acc1) + 0.5 * h * dacc
    denergy = (mass[..., None] * (vel1 * dvel - acc1 * dpos)).sum((-1, -2))
    return pos1, vel1, acc1, energy, dpos, dvel, dacc, denergy


class _StepEnergy(torch.autograd.Function):
    """``(pos1, vel1, acc1, E1)`` of a KDK step as functions of ``dt`` only, their derivatives computed
    in the same pass and kept for the backward: (B, N, D) tensors, no pair tensor. The other inputs
    are constants (the caller checks that none needs a gradient)."""

    @staticmethod
    def forward(dt: torch.Tensor, pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, acc: torch.Tensor,
                gravity: Gravity) -> tuple[torch.Tensor, ...]:
        return in_blocks(partial(step_energy_and_derivatives, gravity=gravity), pos, vel, mass, acc, dt)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: tuple) -> None:
        pos1, vel1, _, energy = output[:4]
        finite = torch.isfinite(energy) & torch.isfinite(pos1).all((1, 2)) & torch.isfinite(vel1).all((1, 2))
        ctx.save_for_backward(finite, *output[4:])
        ctx.mark_non_differentiable(*output[4:])

    @staticmethod
    def backward(ctx, g_pos: torch.Tensor | None, g_vel: torch.Tensor | None, g_acc: torch.Tensor | None,
                 g_energy: torch.Tensor | None, *_: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        """The derivative along dt; exactly zero on the rows whose step is not finite (their
        cotangents and derivatives may be NaN)."""
        finite, dpos, dvel, dacc, denergy = ctx.saved_tensors
        grad = torch.zeros_like(denergy) if g_energy is None else g_energy * denergy
        for g, d in ((g_pos, dpos), (g_vel, dvel), (g_acc, dacc)):
            if g is not None:
                grad = grad + (g * d).sum((-1, -2))
        return torch.where(finite, grad, 0.0), None, None, None, None, None


def step_with_energy(s: Systems, dt: torch.Tensor, gravity: Gravity) -> tuple[Systems, torch.Tensor]:
    """A KDK step of every system and its total energy (B,), differentiable with respect to ``dt``
    through the closed form; by plain autograd when a state tensor needs a gradient too, and without
    the derivatives when ``dt`` needs none."""
    closed = torch.is_grad_enabled() and dt.requires_grad
    if closed and not any(t.requires_grad for t in (s.pos, s.vel, s.mass, s.acc)):
        pos1, vel1, acc1, energy = _StepEnergy.apply(dt, s.pos, s.vel, s.mass, s.acc, gravity)[:4]
        return Systems(pos1, vel1, s.mass, acc1, s.time + dt), energy
    pos1, vel1, acc1 = kdk(s.pos, s.vel, s.mass, s.acc, dt, gravity)
    new = Systems(pos1, vel1, s.mass, acc1, s.time + dt)
    return new, gravity.energy(new)
