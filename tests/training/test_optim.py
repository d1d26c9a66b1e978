"""build_adam: torch's fused Adam where available, the same updates as the default Adam."""

from __future__ import annotations

import pytest
import torch

from sigmavae.training import build_adam


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int = 5) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 6, generator=g)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()


def test_fused_adam_takes_the_default_adams_steps():
    fused_model, plain_model, start = _net(), _net(), _net()
    fused = build_adam(fused_model.parameters(), lr=1e-2)
    plain = torch.optim.Adam(plain_model.parameters(), lr=1e-2)
    assert fused.param_groups[0]["fused"]  # this torch has fused Adam on the CPU
    _train(fused_model, fused)
    _train(plain_model, plain)
    for a, b, a0 in zip(fused_model.parameters(), plain_model.parameters(), start.parameters(),
                        strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert float((a - a0).detach().abs().max()) > 1e-3  # five steps of lr 1e-2 moved it


def test_falls_back_where_fused_adam_is_unavailable(monkeypatch):
    original = torch.optim.Adam

    class NoFused(original):
        def __init__(self, params, **kwargs):
            if kwargs.get("fused"):
                raise RuntimeError("`fused=True` requires all the params to be CUDA tensors")
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", NoFused)
    opt = build_adam(_net().parameters(), lr=1e-3)
    assert not opt.param_groups[0]["fused"]
    assert len(opt.param_groups[0]["params"]) == 4  # the parameter list was not consumed


@pytest.mark.parametrize("fused", [True, False])
def test_option_is_honoured(fused):
    opt = build_adam(_net().parameters(), lr=1e-3, fused=fused)
    assert bool(opt.param_groups[0]["fused"]) == fused
