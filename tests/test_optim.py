"""ClippedAdam: the same updates as clip_grad_norm_ + torch.optim.Adam, on one flat vector."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from aits.training.optim import ClippedAdam

F64 = torch.float64


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).to(F64)


def loss(model: nn.Module, step: int) -> torch.Tensor:
    x = torch.randn(32, 5, dtype=F64, generator=torch.Generator().manual_seed(step))
    return (model(x) ** 2).mean() * 10 ** (step % 3)  # gradient norms above and below the clip


def reference_step(model: nn.Module, optimizer: torch.optim.Adam, step: int, max_norm: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss(model, step).backward()
    if torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)):
        optimizer.step()


def flat_step(model: nn.Module, optimizer: ClippedAdam, step: int) -> None:
    optimizer.zero_grad()
    loss(model, step).backward()
    optimizer.step()


def test_updates_equal_clip_grad_norm_and_adam() -> None:
    ref, flat = net(), net()
    ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-3)
    flat_opt = ClippedAdam(flat.parameters(), lr=3e-3, max_norm=1.0)
    for step in range(20):
        reference_step(ref, ref_opt, step, 1.0)
        flat_step(flat, flat_opt, step)
        for a, b in zip(ref.parameters(), flat.parameters()):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    for a, b in zip(ref_opt.state.values(), flat_opt.state.values()):
        torch.testing.assert_close(b["exp_avg_sq"], a["exp_avg_sq"], rtol=1e-12, atol=1e-20)


def test_state_dict_loads_both_ways_with_torch_adam() -> None:
    ref, flat = net(), net()
    ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-3)
    flat_opt = ClippedAdam(flat.parameters(), lr=3e-3, max_norm=1.0)
    assert flat_opt.state_dict()["state"] == {}
    for step in range(3):
        reference_step(ref, ref_opt, step, 1.0)
    flat.load_state_dict(ref.state_dict())
    flat_opt.load_state_dict(ref_opt.state_dict())  # e.g. a checkpoint written before ClippedAdam
    reference_step(ref, ref_opt, 3, 1.0)
    flat_step(flat, flat_opt, 3)
    for a, b in zip(ref.parameters(), flat.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    again = torch.optim.Adam(net().parameters(), lr=3e-3)
    again.load_state_dict(flat_opt.state_dict())
    assert int(next(iter(again.state.values()))["step"]) == 4


def test_resume_from_state_dict_is_bit_identical() -> None:
    a, b = net(), net()
    opt_a = ClippedAdam(a.parameters(), lr=3e-3, max_norm=1.0)
    for step in range(5):
        flat_step(a, opt_a, step)
    b.load_state_dict(a.state_dict())
    opt_b = ClippedAdam(b.parameters(), lr=3e-3, max_norm=1.0)
    opt_b.load_state_dict(opt_a.state_dict())
    for step in range(5, 10):
        flat_step(a, opt_a, step)
        flat_step(b, opt_b, step)
    assert torch.equal(opt_a.flat, opt_b.flat) and torch.equal(opt_a.exp_avg_sq, opt_b.exp_avg_sq)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_nonfinite_gradient_is_skipped(bad: float) -> None:
    model = net()
    optimizer = ClippedAdam(model.parameters(), lr=3e-3, max_norm=1.0)
    before = optimizer.flat.clone()
    optimizer.zero_grad()
    (loss(model, 0) * bad).backward()
    assert not optimizer.step()
    assert torch.equal(optimizer.flat, before) and optimizer.steps == 0 and not optimizer.exp_avg.any()


def test_gradients_replaced_behind_its_back_are_an_error() -> None:
    model = net()
    optimizer = ClippedAdam(model.parameters(), lr=3e-3, max_norm=1.0)
    model.zero_grad()  # sets .grad to None: the flat buffer would no longer see the gradients
    loss(model, 0).backward()
    with pytest.raises(RuntimeError, match="ClippedAdam.zero_grad"):
        optimizer.step()
