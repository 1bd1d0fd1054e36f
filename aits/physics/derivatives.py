"""Time derivatives of the gravitational accelerations, computed analytically pair by pair."""

from __future__ import annotations

import torch

from aits.physics.gravity import Gravity, dot, pair_masks


def derivatives(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor,
                gravity: Gravity) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Acceleration and its first three time derivatives (jerk, snap, crackle), each (B, N, D),
    computed analytically pairwise for (softened) point masses.

    With r, v the pair's relative position and velocity and a, j its relative acceleration and jerk:
    alpha = r.v / r^2, beta = (v^2 + r.a) / r^2 + alpha^2,
    gamma = (3 v.a + r.j) / r^2 + alpha (3 beta - 4 alpha^2), and the pair terms
    A0 = G m r / r^3, A1 = G m v / r^3 - 3 alpha A0, A2 = G m a / r^3 - 6 alpha A1 - 3 beta A0,
    A3 = G m j / r^3 - 9 alpha A2 - 9 beta A1 - 3 gamma A0.
    """
    r, r2 = gravity.separations(pos)  # r[b, i, j] = x_j - x_i
    eye, _ = pair_masks(pos.shape[1], pos.device)
    inv_r2 = (1.0 / r2.masked_fill(eye, 1.0)).masked_fill_(eye, 0.0)
    gm_r3 = (gravity.G * mass[:, None, :] * inv_r2 * inv_r2.sqrt())[..., None]  # (B, N, N, 1)

    def relative(x: torch.Tensor) -> torch.Tensor:
        return x[:, None, :, :] - x[:, :, None, :]

    v = relative(vel)
    alpha = dot(r, v) * inv_r2
    alpha2 = alpha * alpha
    a0 = gm_r3 * r
    a1 = torch.addcmul(gm_r3 * v, alpha[..., None], a0, value=-3)
    acc, jerk = a0.sum(2), a1.sum(2)
    a_rel, j_rel = relative(acc), relative(jerk)
    beta = (dot(v, v) + dot(r, a_rel)) * inv_r2 + alpha2
    a2 = torch.addcmul(torch.addcmul(gm_r3 * a_rel, alpha[..., None], a1, value=-6), beta[..., None], a0, value=-3)
    gamma = torch.addcmul(torch.add(dot(r, j_rel), dot(v, a_rel), alpha=3) * inv_r2, alpha,
                          torch.add(3 * beta, alpha2, alpha=-4))
    a3 = gm_r3 * j_rel
    for coefficient, x, y in ((-9, alpha, a2), (-9, beta, a1), (-3, gamma, a0)):
        a3 = torch.addcmul(a3, x[..., None], y, value=coefficient)
    return acc, jerk, a2.sum(2), a3.sum(2)


def aarseth_time(pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, gravity: Gravity) -> torch.Tensor:
    """Aarseth's time scale (B,): the minimum over bodies of sqrt((|a||a2| + |a1|^2) / (|a1||a3| + |a2|^2)),
    a..a3 the acceleration and its first three derivatives; his criterion is dt = sqrt(eta) times it."""
    a, a1, a2, a3 = (x.norm(dim=-1) for x in derivatives(pos, vel, mass, gravity))
    return ((a * a2 + a1 * a1) / (a1 * a3 + a2 * a2)).sqrt().amin(1)
