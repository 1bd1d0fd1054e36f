"""The learned policy: a small network predicting log(dt / T), T its feature adapter's time scale (the closest
pair's free-fall time, or Aarseth's time scale)."""

from __future__ import annotations

import math

import torch
from torch import nn

from aits.config import ModelConfig
from aits.interfaces import FeatureAdapter
from aits.physics import Systems


class Tanh(nn.Module):
    """``tanh``; while compiling written as ``2 sigmoid(2x) - 1`` (equal to rounding), which
    inductor's float64 CPU code runs about 4x faster than its own ``tanh``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(2 * x) - 1 if torch.compiler.is_compiling() else torch.tanh(x)


UNSEEN = torch.finfo(torch.float32).max  # the empty feature range, finite in either dtype
ACTIVATION = {"tanh": Tanh, "silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}


class DtNet(nn.Module):
    """MLP from features to ``log(dt / tau)``, with one of two outputs (``model.output``):

    * ``free``: squashed into [log min_dt_fraction, log max_dt_fraction]; the output layer's bias is
      set so that an untrained network predicts ``init_dt_fraction * tau``.
    * ``bounded``: ``log(base) + log(k) tanh(mlp)``, with ``base`` one learned fraction (starting at
      ``init_dt_fraction``, kept in [min, max]) and ``k = max_correction``: whatever the input, dt
      stays within a factor k of ``base * tau``, the free-fall rule at eta = base.

    Either way the output layer starts almost flat, so that the first steps are sane.
    """

    def __init__(self, in_dim: int, config: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for size in config.hidden:
            layers += [nn.Linear(width, size), ACTIVATION[config.activation]()]
            width = size
        out = nn.Linear(width, 1)
        nn.init.normal_(out.weight, std=1e-3)
        self.lo, self.hi = math.log(config.min_dt_fraction), math.log(config.max_dt_fraction)
        self.bounded = config.output == "bounded"
        if self.bounded:
            nn.init.zeros_(out.bias)
            self.log_k = math.log(config.max_correction)
            self.log_base = nn.Parameter(torch.full((1,), math.log(config.init_dt_fraction)))
            self.squash = Tanh()
        else:
            start = (math.log(config.init_dt_fraction) - self.lo) / (self.hi - self.lo)
            nn.init.constant_(out.bias, math.log(start / (1 - start)))
        self.body = nn.Sequential(*layers, out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raw = self.body(features).squeeze(-1)
        if self.bounded:
            return self.log_base.clamp(self.lo, self.hi) + self.log_k * self.squash(raw)
        return self.lo + (self.hi - self.lo) * torch.sigmoid(raw)


class Policy(nn.Module):
    """Features -> network -> dt, for a batch of systems.

    A ``bounded`` policy also clamps each feature to the range it saw in training (buffers
    ``feature_lo``, ``feature_hi``, saved with the weights, widened by :meth:`observe`; no clamping
    before the first observation), so that on unfamiliar states it answers as at the edge of the
    familiar ones.

    Trained on several populations, the policy learns one offset of log dt per population (zero
    mean, ``population_offsets``), added in training only: the energy gate is relative to each
    system's own energy, so that the same per-step error asks for a different overall level of
    dt / tau in a binary than in a cluster. The offsets absorb those levels, and the network learns
    only how dt varies with the state, which is what carries over to a new system (whose overall
    level ``aits simulate --target-error`` searches). Deployed, the policy steps at the mean level.
    """

    def __init__(self, adapter: FeatureAdapter, config: ModelConfig, populations: int = 1) -> None:
        super().__init__()
        self.adapter = adapter
        self.net = DtNet(adapter.dim, config)
        self.population_offsets = nn.Parameter(torch.zeros(populations)) if populations > 1 else None
        self.clamps = self.net.bounded
        if self.clamps:  # lo > hi: nothing seen yet (finite, so that checkpoints hold finite numbers only)
            self.register_buffer("feature_lo", torch.full((adapter.dim,), UNSEEN))
            self.register_buffer("feature_hi", torch.full((adapter.dim,), -UNSEEN))

    @torch.no_grad()
    def observe(self, s: Systems, history: torch.Tensor) -> None:
        """Widen the feature range to include these training states (a no-op for a free policy)."""
        if self.clamps and s.batch:
            features = self.adapter.features(s, history)
            torch.minimum(self.feature_lo, features.amin(0), out=self.feature_lo)
            torch.maximum(self.feature_hi, features.amax(0), out=self.feature_hi)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        key = prefix + "population_offsets"
        if self.population_offsets is not None and key not in state_dict:  # trained before the offsets
            state_dict[key] = torch.zeros_like(self.population_offsets)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, s: Systems, history: torch.Tensor, population: int | None = None,
                cached: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dt, log(dt / tau))``, each (B,); with ``population`` (in training), at that population's
        level; ``cached``: the adapter's features and time scales of these states, computed beforehand."""
        features, tau = self.adapter.features_and_timescale(s, history) if cached is None else cached
        if self.clamps:
            seen = self.feature_lo <= self.feature_hi
            features = torch.where(seen, torch.minimum(torch.maximum(features, self.feature_lo), self.feature_hi),
                                   features)
        log_ratio = self.net(features)
        if population is not None and self.population_offsets is not None:
            log_ratio = log_ratio + (self.population_offsets[population] - self.population_offsets.mean())
        return tau * torch.exp(log_ratio), log_ratio
