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
        self.grads = self._views(self.grad)
        for p, data, grad in zip(self.params, self._views(self.flat), self.grads):
            p.data, p.grad = data, grad

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``flat`` cut into tensors shaped like the parameters."""
        return [part.view_as(p) for part, p in zip(flat.split([p.numel() for p in self.params]), self.params)]

    @property
    def state(self) -> dict[nn.Parameter, dict[str, torch.Tensor]]:
        """Per parameter, as in ``torch.optim.Adam.state``: the step count and views of the moments."""
        if self.steps == 0:
            return {}
        step = torch.tensor(float(self.steps))
        return {p: {"step": step, "exp_avg": m, "exp_avg_sq": v}
                for p, m, v in zip(self.params, self._views(self.exp_avg), self._views(self.exp_avg_sq))}

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
        clip = self.max_norm / (norm + 1e-6)  # as clip_grad_norm_
        if clip < 1:
            self.grad.mul_(clip)
        beta1, beta2 = self.betas
        self.steps += 1
        self.exp_avg.lerp_(self.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**self.steps)).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - beta1**self.steps))
        return True

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
            for i, view in enumerate(self._views(flat)):
                view.copy_(state[i][name] if state else 0)
