"""Built-in feature adapters: ``analytic`` (current state) and ``history`` (plus past steps).

All features are dimensionless and invariant under permutation of the bodies, rotation,
translation and a change of length, mass or time unit, so that a policy trained on one scale
transfers to another.
"""

from __future__ import annotations

import torch

from aits.hookspecs import hookimpl
from aits.interfaces import FeatureAdapter
from aits.physics import Gravity, Systems
from aits.physics.blocks import in_blocks
from aits.physics.derivatives import aarseth_time
from aits.physics.gravity import dot, pair_freefall_time, pair_masks, pow_three_halves
from aits.registry import Registrar

PAIR_FEATURES = 5


def closest_pair_features(s: Systems, gravity: Gravity) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (B, 5) of the pair with the shortest free-fall time, and that time (B,).

    For that pair (relative position r, velocity v, mass m): log(1 + v^2 r / Gm) (where on the orbit
    and how bound), the radial cosine r.v / |r||v| (approaching or receding), log(1 + h^2 / Gmr)
    (h the specific angular momentum: 1 + e cos f for a Kepler orbit), log(1 + |tidal| / |pair|)
    accelerations, and the ratio of its free-fall time to the next shortest one (0 for two bodies).
    """
    if s.bodies == 2:  # one pair: no pair table to search
        r, v, da = (x[:, 1] - x[:, 0] for x in (s.pos, s.vel, s.acc))
        m, second = s.mass.sum(1), torch.full_like(s.time, float("inf"))
    else:
        second, i, j = _closest_pair(s, gravity)
        rows = torch.arange(s.batch, device=s.pos.device)
        r, v, da = (x[rows, j] - x[rows, i] for x in (s.pos, s.vel, s.acc))
        m = s.mass[rows, i] + s.mass[rows, j]
    r2 = dot(r, r) + gravity.softening**2
    v2 = dot(v, v)
    rv = dot(r, v)
    gm = gravity.G * m
    r1, r3, r2v2 = r2.sqrt(), pow_three_halves(r2), r2 * v2
    tau = pair_freefall_time(r2, gm)
    a_pair = -gm[:, None] * r / r3[:, None]
    a_tidal = da - a_pair
    tiny = torch.finfo(s.pos.dtype).tiny
    features = torch.stack(
        [
            torch.log1p(v2 * r1 / gm),
            rv.abs() / (r2v2 + tiny).sqrt(),
            torch.log1p((r2v2 - rv * rv).clamp_min(0) / (gm * r1)),
            torch.log1p(a_tidal.norm(dim=-1) / a_pair.norm(dim=-1)),
            tau / second,
        ],
        -1,
    )
    return features, tau


def _closest_pair(s: Systems, gravity: Gravity) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The second shortest pair free-fall time (B,), and the pair (i, j) with the shortest."""
    n = s.bodies
    _, upper = pair_masks(n, s.pos.device)

    def two_shortest(pos: torch.Tensor, mass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The second shortest time and the flat index of the shortest: a minimum, then the minimum of
        the others (not ``topk``: a library call that a compiled graph cannot fuse with the pair pass)."""
        tau = gravity.pair_timescales(pos, mass).masked_fill(~upper, float("inf")).flatten(1)
        idx = tau.argmin(1)
        others = tau.masked_fill(torch.arange(n * n, device=tau.device) == idx[:, None], float("inf"))
        return others.amin(1), idx

    second, idx = in_blocks(two_shortest, s.pos, s.mass)
    return second, idx // n, idx % n


class Analytic(FeatureAdapter):
    """Dimensionless invariants of the closest pair (orbit phase, binding, tidal perturbation)."""

    name = "analytic"
    dim = PAIR_FEATURES

    def features(self, s: Systems, history: torch.Tensor) -> torch.Tensor:
        return closest_pair_features(s, self.gravity)[0]

    def features_and_timescale(self, s: Systems, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return closest_pair_features(s, self.gravity)


class AarsethScaled(FeatureAdapter):
    """The analytic features and log(T_A / tau), relative to Aarseth's time scale T_A (its criterion's
    dt at eta = 1, from the acceleration and its first three derivatives of every body) instead of
    the closest pair's free-fall time tau: a policy that starts from the better classical rule on
    clusters. Costs about four pair passes per evaluation more than ``analytic``."""

    name = "analytic_aarseth"
    dim = PAIR_FEATURES + 1

    def features(self, s: Systems, history: torch.Tensor) -> torch.Tensor:
        return self.features_and_timescale(s, history)[0]

    def features_and_timescale(self, s: Systems, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, tau = closest_pair_features(s, self.gravity)
        scale = aarseth_time(s.pos, s.vel, s.mass, self.gravity)
        return torch.cat([features, torch.log(scale / tau)[:, None]], -1), scale


class History(FeatureAdapter):
    """The analytic features plus, for each of the last ``history_len`` accepted steps, its analytic
    features and log(dt / free-fall time); zero-padded at start-up."""

    name = "history"

    def __init__(self, gravity: Gravity, history_len: int = 4) -> None:
        super().__init__(gravity)
        if history_len < 1:
            raise ValueError("the history adapter needs history_len >= 1")
        self.history_len = history_len
        self.memory_dim = PAIR_FEATURES + 1
        self.dim = PAIR_FEATURES + history_len * self.memory_dim

    def features(self, s: Systems, history: torch.Tensor) -> torch.Tensor:
        return self.features_and_timescale(s, history)[0]

    def features_and_timescale(self, s: Systems, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        current, tau = closest_pair_features(s, self.gravity)
        return torch.cat([current, history.flatten(1)], -1), tau

    def memory(self, s: Systems, dt: torch.Tensor) -> torch.Tensor:
        features, tau = closest_pair_features(s, self.gravity)
        return torch.cat([features, torch.log(dt / tau)[:, None]], -1)


@hookimpl
def aits_register(registrar: Registrar) -> None:
    registrar.features(Analytic)
    registrar.features(History)
    registrar.features(AarsethScaled)
