"""The functional API: ``gaussian_nll`` (one line in place of ``F.mse_loss``) and the stateful
``GaussianNLL``, against torch's GaussianNLLLoss, scipy and the optimal-sigma head."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy import stats

from sigmavae.likelihoods import GaussianNLL, LikelihoodInputError, create, gaussian_nll


def _torch_nll(pred, target, var):
    """torch's Gaussian NLL with the constant (``full=True``), summed over non-batch dims."""
    loss = torch.nn.GaussianNLLLoss(full=True, eps=1e-300, reduction="none")
    return loss(pred, target, var.expand_as(pred)).flatten(1).sum(1)


def _data(seed=0, shape=(8, 3, 5)):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1
    pred = target + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    return pred, target


@pytest.mark.parametrize("shape", [(8,), (8, 5), (8, 3, 5), (4, 2, 3, 3)])
def test_a_fixed_sigma_is_torchs_gaussian_nll_and_scipys_logpdf(shape):
    pred, target = _data(shape=shape)
    nll, sigma = gaussian_nll(pred, target, sigma=0.25)
    assert nll.shape == (shape[0],) and float(sigma) == pytest.approx(0.25)
    var = torch.tensor(0.0625, dtype=torch.float64)
    if len(shape) == 1:
        want = torch.nn.GaussianNLLLoss(full=True, reduction="none")(
            pred, target, var.expand_as(pred))
    else:
        want = _torch_nll(pred, target, var)
    torch.testing.assert_close(nll, want, rtol=1e-12, atol=1e-12)
    ref = -stats.norm.logpdf(target.numpy(), pred.numpy(), 0.25).reshape(shape[0], -1).sum(1)
    np.testing.assert_allclose(nll.numpy(), ref, rtol=1e-12)


def test_the_optimal_sigma_is_the_batch_mse_in_every_scope():
    pred, target = _data()
    sq = (target - pred) ** 2
    cases = {"shared": sq.mean(), "per_image": sq.mean((1, 2), keepdim=True),
             "per_dim": sq.mean(0)}
    for scope, var in cases.items():
        nll, sigma = gaussian_nll(pred, target, scope=scope)
        torch.testing.assert_close(sigma, var.sqrt(), rtol=1e-12, atol=0)
        torch.testing.assert_close(nll, _torch_nll(pred, target, var), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scope", ["shared", "per_image", "per_dim"])
def test_optimal_equals_the_head_and_so_do_the_gradients(scope):
    """The head lets gradients flow through sigma, the function does not (the analytic estimate
    is a constant of the step); at the exact MLE both give the same gradients of the mean NLL
    (envelope theorem), and the same values."""
    pred, target = _data()
    pred = pred.requires_grad_(True)
    head = create(f"optimal_sigma{'' if scope == 'shared' else '_' + scope}",
                  data_range="real").double()
    head_nll = -head(pred, target=target).log_prob(target)
    (g_head,) = torch.autograd.grad(head_nll.mean(), pred)
    nll, _ = gaussian_nll(pred, target, scope=scope)
    (g_fn,) = torch.autograd.grad(nll.mean(), pred)
    torch.testing.assert_close(nll, head_nll, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_fn, g_head, rtol=1e-9, atol=1e-12)


def test_a_learned_log_sigma_gets_gradients_and_a_tensor_sigma_is_per_element():
    pred, target = _data()
    log_sigma = torch.nn.Parameter(torch.tensor(-0.5, dtype=torch.float64))
    nll, sigma = gaussian_nll(pred, target, log_sigma=log_sigma)
    nll.mean().backward()
    assert log_sigma.grad is not None and float(log_sigma.grad) != 0.0
    torch.testing.assert_close(sigma, log_sigma.detach().exp())
    torch.testing.assert_close(nll.detach(), _torch_nll(pred, target, sigma ** 2))
    # analytic derivative of the mean NLL in log sigma: D - SSE / sigma^2, averaged
    d = target[0].numel()
    sse = ((target - pred) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(log_sigma.grad, (d - sse / sigma ** 2).mean())
    per_elem = torch.rand(3, 5, dtype=torch.float64) + 0.1
    nll, sigma = gaussian_nll(pred, target, sigma=per_elem)
    torch.testing.assert_close(nll, _torch_nll(pred, target, per_elem ** 2))
    assert sigma.shape == (3, 5)


def test_masks_leave_out_padding_from_the_nll_and_the_optimal_sigma():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(4, 6, 2, generator=g, dtype=torch.float64)
    pred = torch.randn(4, 6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 3, 0, 1])
    mask = torch.arange(6) < lengths.unsqueeze(1)  # (B, T)
    target = target.masked_fill(~mask.unsqueeze(-1), float("nan"))
    nll, sigma = gaussian_nll(pred, target, mask=mask)
    obs = mask.unsqueeze(-1).expand_as(target)
    want_sigma = ((target - pred.detach())[obs] ** 2).mean().sqrt()
    torch.testing.assert_close(sigma, want_sigma, rtol=1e-12, atol=0)
    ref = stats.norm.logpdf(np.nan_to_num(target.numpy()), pred.detach().numpy(),
                            float(want_sigma))
    want = -np.where(obs.numpy(), ref, 0.0).reshape(4, -1).sum(1)
    np.testing.assert_allclose(nll.detach().numpy(), want, rtol=1e-12)
    assert float(nll[2].detach()) == 0.0
    nll.sum().backward()
    assert bool(torch.isfinite(pred.grad).all()) and bool((pred.grad[~obs] == 0).all())
    # and the mask also works with a fixed or a learned sigma
    nll_fixed, _ = gaussian_nll(pred, target, sigma=0.5, mask=mask)
    assert float(nll_fixed[2].detach()) == 0.0 and bool(torch.isfinite(nll_fixed).all())


def test_wrong_inputs_are_one_clear_line():
    pred, target = _data()
    with pytest.raises(LikelihoodInputError, match="same non-empty shape"):
        gaussian_nll(pred, target[:, :2])
    with pytest.raises(ValueError, match="not both"):
        gaussian_nll(pred, target, sigma=0.1, log_sigma=torch.zeros(()))
    with pytest.raises(ValueError, match="scope"):
        gaussian_nll(pred, target, scope="per_pixel")
    with pytest.raises(ValueError, match="positive"):
        gaussian_nll(pred, target, sigma=-1.0)
    with pytest.raises(ValueError, match="'optimal'"):
        gaussian_nll(pred, target, sigma="learned")
    with pytest.raises(LikelihoodInputError, match="mask has shape"):
        gaussian_nll(pred, target, mask=torch.ones(3, 8, dtype=torch.bool))


# -- the module ------------------------------------------------------------------------------------
def test_the_module_keeps_the_running_sigma_of_the_optimal_head():
    crit, head = GaussianNLL(decay=0.5).double(), create("optimal_sigma", data_range="real",
                                                         decay=0.5).double()
    for seed in range(3):
        pred, target = _data(seed)
        nll, sigma = crit(pred, target)
        d = head(pred, target=target)
        torch.testing.assert_close(sigma, d.sigma, rtol=1e-12, atol=0)
        torch.testing.assert_close(nll, -d.log_prob(target), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(crit.optimal.running_var, head.running_var, rtol=1e-12, atol=0)
    crit.eval()
    pred, target = _data(7)
    nll, sigma = crit(pred, target)
    torch.testing.assert_close(sigma, head.sigma.double())
    torch.testing.assert_close(nll, _torch_nll(pred, target, sigma ** 2))
    # state travels with state_dict
    buffer = io.BytesIO()
    torch.save(crit.state_dict(), buffer)
    buffer.seek(0)
    fresh = GaussianNLL().double()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh.eval()
    torch.testing.assert_close(fresh(pred, target)[0], nll)


def test_the_module_masks_and_refuses_eval_before_training():
    crit = GaussianNLL(scope="per_dim").double()
    with pytest.raises(LikelihoodInputError, match="no running estimate"):
        crit.eval()(*_data())
    crit.train()
    pred, target = _data()
    mask = torch.ones(8, 3, dtype=torch.bool)
    mask[0] = False
    nll, sigma = crit(pred, target, mask=mask)
    torch.testing.assert_close(sigma, ((target - pred)[1:] ** 2).mean(0).sqrt())
    assert float(nll[0]) == 0.0


def test_learned_and_fixed_modules():
    crit = GaussianNLL("learned", init_sigma=0.5).double()
    assert [n for n, _ in crit.named_parameters()] == ["log_sigma"]
    pred, target = _data()
    nll, _ = crit(pred, target)
    var = torch.tensor(0.25, dtype=torch.float64)
    torch.testing.assert_close(nll, _torch_nll(pred, target, var))
    nll.mean().backward()
    assert crit.log_sigma.grad is not None
    assert float(GaussianNLL(0.1).sigma) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="'optimal', 'learned'"):
        GaussianNLL("other")
    assert math.isclose(float(crit.sigma), 0.5, rel_tol=1e-6)  # a float32 parameter
