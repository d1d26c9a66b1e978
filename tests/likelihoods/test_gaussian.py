"""Gaussian heads against torch.distributions / scipy, the beta <-> sigma mapping, gradients."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy import stats

from sigmavae.likelihoods import (
    LikelihoodInputError,
    beta_from_sigma,
    create,
    sigma_from_beta,
    softclip,
)

torch.manual_seed(0)


def _data(b=4, c=3, h=5, w=6, dtype=torch.float64):
    return torch.rand(b, c, h, w, dtype=dtype)


def test_unit_gaussian_matches_scipy_with_identity_mean():
    head = create("gaussian", mean_activation="identity")
    x = _data()
    params = torch.randn_like(x)
    lp = head(params, target=x).log_prob(x)
    ref = stats.norm.logpdf(x.numpy(), loc=params.numpy(), scale=1.0).reshape(4, -1).sum(1)
    np.testing.assert_allclose(lp.numpy(), ref, rtol=1e-10)


def test_sigmoid_mean_activation_is_default():
    head = create("gaussian")
    x = _data()
    params = torch.randn_like(x)
    dist = head(params)
    torch.testing.assert_close(dist.mean, torch.sigmoid(params))


def test_fixed_sigma_matches_scipy_and_paper_table1_mapping():
    # Table 1: the sigma-VAE on SVHN converged to the equivalent of beta = 0.006.
    head = create("fixed_sigma", beta=0.006, mean_activation="identity")
    assert math.isclose(float(head.sigma), math.sqrt(0.003), rel_tol=1e-6)
    assert math.isclose(float(head.effective_beta), 0.006, rel_tol=1e-5)
    assert math.isclose(sigma_from_beta(0.01), math.sqrt(0.005))
    assert math.isclose(beta_from_sigma(sigma_from_beta(0.1)), 0.1)
    x = _data()
    params = torch.rand_like(x)
    lp = head(params).log_prob(x)
    ref = stats.norm.logpdf(x.numpy(), loc=params.numpy(), scale=math.sqrt(0.003))
    np.testing.assert_allclose(lp.numpy(), ref.reshape(4, -1).sum(1), rtol=1e-6)


def test_beta_vae_loss_is_scaled_fixed_sigma_elbo():
    """SSE + beta KL == 2 sigma^2 (NLL + KL) + const for sigma = sqrt(beta / 2): same gradients."""
    beta = 0.05
    head = create("fixed_sigma", beta=beta, mean_activation="identity")
    x = _data()
    params = torch.rand_like(x, requires_grad=True)
    kl = (params**2).sum() * 0.1  # any function of the parameters stands in for the KL
    beta_loss = ((params - x) ** 2).sum() + beta * kl
    (g_beta,) = torch.autograd.grad(beta_loss, params)
    params2 = params.detach().clone().requires_grad_(True)
    kl2 = (params2**2).sum() * 0.1
    elbo_loss = -head(params2).log_prob(x).sum() + kl2
    (g_elbo,) = torch.autograd.grad(elbo_loss, params2)
    torch.testing.assert_close(g_beta, 2 * sigma_from_beta(beta) ** 2 * g_elbo)


def test_fixed_sigma_needs_exactly_one_of_sigma_beta():
    with pytest.raises(ValueError, match="exactly one"):
        create("fixed_sigma")
    with pytest.raises(ValueError, match="exactly one"):
        create("fixed_sigma", sigma=0.1, beta=0.1)
    with pytest.raises(ValueError, match="beta must be > 0"):
        create("fixed_sigma", beta=-1.0)


def test_learned_sigma_is_a_parameter_and_survives_state_dict():
    head = create("learned_sigma", init_sigma=0.3)
    assert [n for n, _ in head.named_parameters()] == ["raw_log_sigma"]
    with torch.no_grad():
        head.raw_log_sigma.fill_(-2.5)
    buf = io.BytesIO()
    torch.save(head.state_dict(), buf)
    buf.seek(0)
    other = create("learned_sigma")
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert math.isclose(float(other.sigma), math.exp(-2.5), rel_tol=1e-6)


def test_learned_sigma_gradient_drives_sigma_to_rmse():
    torch.manual_seed(1)
    head = create("learned_sigma", mean_activation="identity")
    x = torch.rand(64, 1, 4, 4)
    mean = x + 0.07 * torch.randn_like(x)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        (-head(mean).log_prob(x).mean()).backward()
        opt.step()
    rmse = (x - mean).pow(2).mean().sqrt()
    assert math.isclose(float(head.sigma), float(rmse), rel_tol=1e-3)


def test_per_pixel_sigma_matches_torch_normal_with_softclip():
    head = create("per_pixel_sigma", mean_activation="identity", max_log_sigma=2.0)
    assert head.param_channels(3) == 6
    x = _data()
    params = torch.randn(4, 6, 5, 6, dtype=torch.float64) * 4
    mean, raw = params[:, :3], params[:, 3:]
    sigma = softclip(raw, -6.0, 2.0).exp()
    ref = torch.distributions.Normal(mean, sigma).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(head(params).log_prob(x), ref)
    assert float(sigma.min()) >= math.exp(-6.0)


def test_softclip_bounds_and_identity_far_from_bounds():
    x = torch.linspace(-50, 50, 1001, dtype=torch.float64)
    y = softclip(x, -6.0, 3.0)
    assert float(y.min()) >= -6.0
    # The lower clip is applied last, so the upper bound leaks by softplus(-(max - min)).
    assert float(y.max()) <= 3.0 + math.log1p(math.exp(-9.0)) + 1e-12
    mid = (x > -1) & (x < 0)
    torch.testing.assert_close(y[mid], x[mid], atol=0.05, rtol=0)
    assert torch.all(y[1:] >= y[:-1])  # monotone
    with pytest.raises(ValueError, match="below maximum"):
        softclip(x, 1.0, 0.0)


@pytest.mark.parametrize("name", ["gaussian", "learned_sigma", "per_pixel_sigma", "fixed_sigma"])
def test_gradcheck_float64(name):
    opts = {"beta": 0.1} if name == "fixed_sigma" else {}
    head = create(name, **opts).double()
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    params = torch.randn(2, head.param_channels(2), 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: head(p, target=x).log_prob(x), (params,))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.full((2, 1, 3, 3), 1.5), r"\[0, 1\]"),
        (torch.full((2, 1, 3, 3), -0.1), r"\[0, 1\]"),
        (torch.zeros(2, 1, 3, 3, dtype=torch.uint8), "floating point"),
        (torch.full((2, 1, 3, 3), float("nan")), "NaN"),
    ],
)
def test_continuous_heads_reject_bad_data(bad, match):
    head = create("gaussian")
    params = torch.zeros(2, 1, 3, 3)
    with pytest.raises(LikelihoodInputError, match=match):
        head(params).log_prob(bad)


def test_wrong_param_channels_names_the_expected_count():
    head = create("per_pixel_sigma")
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(LikelihoodInputError, match=r"param_channels\(3\) = 6"):
        head(torch.zeros(2, 4, 4, 4), target=x)
    with pytest.raises(LikelihoodInputError, match="not a multiple of 2"):
        head(torch.zeros(2, 5, 4, 4))
    with pytest.raises(LikelihoodInputError, match="shape"):
        head(torch.zeros(2, 6, 4, 4)).log_prob(torch.rand(2, 3, 4, 5))


def test_low_precision_params_are_evaluated_in_float32():
    head = create("gaussian")
    x = torch.rand(2, 1, 3, 3)
    params = torch.randn(2, 1, 3, 3)
    lp16 = head(params.bfloat16()).log_prob(x)
    assert lp16.dtype == torch.float32
    torch.testing.assert_close(lp16, head(params.bfloat16().float()).log_prob(x))


def test_registry_errors_are_specific():
    with pytest.raises(ValueError, match="unknown likelihood 'gausian'; choose one of"):
        create("gausian")
    with pytest.raises(ValueError, match="unknown option"):
        create("gaussian", nonsense=1)


def test_heads_name_their_own_divergence_hint():
    """The trainer asks the head why training diverged instead of matching its name."""
    hint = create("per_pixel_sigma", min_log_sigma=None).divergence_hint()
    assert hint is not None and "without clipping" in hint and "min_log_sigma=-6" in hint
    assert create("per_pixel_sigma").divergence_hint() is None  # clipped: nothing specific
    for name in ("gaussian", "optimal_sigma", "learned_sigma", "categorical"):
        assert create(name).divergence_hint() is None
