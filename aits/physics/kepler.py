"""Two-body (Kepler) relations: closed-form invariants and state vectors."""

from __future__ import annotations

import math

import torch


def period(a: float, m_total: float, G: float = 1.0) -> float:
    """Orbital period ``2 pi sqrt(a^3 / G M)``."""
    return 2 * math.pi * math.sqrt(a**3 / (G * m_total))


def orbital_energy(m1: float, m2: float, a: float, G: float = 1.0) -> float:
    """Total energy ``-G m1 m2 / 2a`` of a bound binary in its centre-of-mass frame."""
    return -G * m1 * m2 / (2 * a)


def true_from_mean_anomaly(mean: torch.Tensor, e: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """Solve Kepler's equation ``M = E - e sin E`` by Newton's method and return the true anomaly."""
    ecc = torch.where(e > 0.8, torch.full_like(mean, math.pi), mean)
    for _ in range(iterations):
        ecc = ecc - (ecc - e * torch.sin(ecc) - mean) / (1 - e * torch.cos(ecc))
    return 2 * torch.atan2(torch.sqrt(1 + e) * torch.sin(ecc / 2), torch.sqrt(1 - e) * torch.cos(ecc / 2))


def relative_state(a: torch.Tensor, e: torch.Tensor, true_anomaly: torch.Tensor, m_total: torch.Tensor, G: float):
    """Relative position and velocity (B, 2) of body 2 about body 1, orbit in the x-y plane."""
    p = a * (1 - e**2)
    r = p / (1 + e * torch.cos(true_anomaly))
    pos = torch.stack([r * torch.cos(true_anomaly), r * torch.sin(true_anomaly)], -1)
    speed = torch.sqrt(G * m_total / p)
    vel = torch.stack([-speed * torch.sin(true_anomaly), speed * (e + torch.cos(true_anomaly))], -1)
    return pos, vel


def elements(rel_pos: torch.Tensor, rel_vel: torch.Tensor, m_total: torch.Tensor, G: float = 1.0):
    """Semi-major axis and eccentricity (each (B,)) from relative position and velocity (B, D),
    total mass (B,)."""
    r = rel_pos.norm(dim=-1)
    v2 = (rel_vel * rel_vel).sum(-1)
    mu = G * m_total
    a = 1 / (2 / r - v2 / mu)
    rv = (rel_pos * rel_vel).sum(-1)
    e_vec = ((v2 - mu / r)[:, None] * rel_pos - rv[:, None] * rel_vel) / mu[:, None]
    return a, e_vec.norm(dim=-1)
