"""Adam after gradient-norm clipping, on one flat vector that holds every parameter.

``torch.optim.Adam.step`` and ``clip_grad_norm_`` loop in Python over the parameter tensors; for a
small policy that bookkeeping costs ten times the arithmetic. Here the parameters and their
gradients are views into two flat tensors, so clipping and the update are a few in-place ops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class ClippedAdam:
    """``clip_grad_norm_(max_norm)`` then ``torch.optim.Adam`` (no weight decay), as one update.

    The parameters' storage moves into ``self.flat`` and their ``.grad`` into ``self.grad`` (views,
    so the module and autograd work on them unchanged); clear gradients with :meth:`zero_grad`.
    ``state_dict()`` has the layout of ``torch.optim.Adam.state_dict()``: checkpoints of either load
    into the other.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, max_norm: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.max_norm, self.betas, self.eps = lr, max_norm, betas, eps
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.steps = 0
        self.grads = self.views(self.grad)
        for p, data, grad in zip(self.params, self.views(self.flat), self.grads):
            p.data, p.grad = data, grad

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``flat`` (or a tensor shaped like it) cut into tensors shaped like the parameters."""
        return [part.view_as(p) for part, p in zip(flat.split([p.numel() for p in self.params]), self.params)]

    @property
    def state(self) -> dict[nn.Parameter, dict[str, torch.Tensor]]:
        """Per parameter, as in ``torch.optim.Adam.state``: the step count and views of the moments."""
        if self.steps == 0:
            return {}
        step = torch.tensor(float(self.steps))
        return {p: {"step": step, "exp_avg": m, "exp_avg_sq": v}
                for p, m, v in zip(self.params, self.views(self.exp_avg), self.views(self.exp_avg_sq))}

    def zero_grad(self) -> None:
        self.grad.zero_()

    def step(self) -> bool:
        """Clip the gradient to norm ``max_norm`` and update; skipped (False) when its norm is not finite."""
        if any(p.grad is not g for p, g in zip(self.params, self.grads)):
            raise RuntimeError("a parameter's .grad was replaced (e.g. by Module.zero_grad()); "
                               "clear gradients with ClippedAdam.zero_grad()")
        norm = float(torch.linalg.vector_norm(self.grad))
        if not math.isfinite(norm):
            return False
        self.steps += 1
        self._update(self.flat, self.grad, self.exp_avg, self.exp_avg_sq, self._clip_factor(norm), self.steps)
        return True

    # --- for a compiled step: the update as a function of tensors ----------------------------------

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The flat parameters and Adam's two moments, for a compiled step to take as inputs and pass
        back to :meth:`update_where`."""
        return self.flat, self.exp_avg, self.exp_avg_sq

    def next_step(self) -> torch.Tensor:
        """The number of the next update, as a 0-d tensor (an input of a compiled step)."""
        return torch.tensor(self.steps + 1, dtype=self.flat.dtype, device=self.flat.device)

    def update_where(self, tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], grad: torch.Tensor,
                     step: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
        """Branch-free (inside a compiled graph): update number ``step`` of ``tensors`` (those of
        :meth:`tensors`) from ``grad``, written in place where ``apply`` holds and the gradient's norm
        is finite. Returns whether it was written; then call :meth:`record_update` outside the graph."""
        norm = torch.linalg.vector_norm(grad)
        applied = apply & torch.isfinite(norm)
        flat, exp_avg, exp_avg_sq = (t.clone() for t in tensors)
        self._update(flat, grad, exp_avg, exp_avg_sq, self._clip_factor(norm), step)
        for old, new in zip(tensors, (flat, exp_avg, exp_avg_sq)):
            old.copy_(torch.where(applied, new, old))
        return applied

    def record_update(self) -> None:
        """Count an update that :meth:`update_where` wrote."""
        self.steps += 1

    def _clip_factor(self, norm: float | torch.Tensor) -> float | torch.Tensor:
        """The factor ``clip_grad_norm_`` scales a gradient of norm ``norm`` by."""
        clip = self.max_norm / (norm + 1e-6)
        return clip.clamp(max=1.0) if isinstance(clip, torch.Tensor) else min(clip, 1.0)

    def _update(self, flat: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                clip: float | torch.Tensor, step: int | torch.Tensor) -> None:
        """In place: scale ``grad`` by ``clip``, then Adam's update number ``step`` of ``flat`` and the
        moments. Branch-free: inside a compiled graph ``clip`` and ``step`` are 0-d tensors."""
        beta1, beta2 = self.betas
        grad.mul_(clip)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias2 = 1 - beta2**step
        denom = (exp_avg_sq.sqrt() / (bias2.sqrt() if isinstance(bias2, torch.Tensor) else math.sqrt(bias2))).add_(self.eps)
        flat.sub_(exp_avg * (self.lr / (1 - beta1**step)) / denom)  # rounded as addcdiv_ would

    def state_dict(self) -> dict:
        state = {i: {k: v.clone() for k, v in s.items()} for i, s in enumerate(self.state.values())}
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": 0, "amsgrad": False,
                 "maximize": False, "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state saved by this class or by ``torch.optim.Adam`` over the same parameters."""
        (group,) = state_dict["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError(f"optimizer state for {len(group['params'])} parameters, expected {len(self.params)}")
        state = state_dict["state"]
        self.steps = int(next(iter(state.values()))["step"]) if state else 0
        for name, flat in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
            for i, view in enumerate(self.views(flat)):
                view.copy_(state[i][name] if state else 0)
