"""The Student-t head against scipy.stats.t (log-density and CDF), mpmath, gradients, shapes."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from sigmavae.likelihoods import (
    DEFAULT_MIN_DF,
    LikelihoodInputError,
    StudentTWithCdf,
    create,
    softclip,
    student_t_cdf,
)
from sigmavae.likelihoods.special import log_gamma_half_ratio


def _params_and_data(b=3, c=3, h=4, w=5, k=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(b, k * c, h, w, generator=g, dtype=dtype) * 2
    x = torch.rand(b, c, h, w, generator=g, dtype=dtype)
    return params, x


def test_log_prob_matches_scipy_and_sums_to_batch():
    head = create("student_t", mean_activation="identity")
    assert head.param_channels(3) == 9
    params, x = _params_and_data()
    loc, raw_scale, raw_df = params.unflatten(1, (3, 3)).unbind(1)
    scale = softclip(raw_scale, -6.0).exp()
    df = DEFAULT_MIN_DF + F.softplus(raw_df)
    ref = stats.t.logpdf(x.numpy(), df.numpy(), loc=loc.numpy(), scale=scale.numpy())
    dist = head(params, target=x)
    np.testing.assert_allclose(dist.elementwise_log_prob(x).numpy(), ref, rtol=1e-10)
    lp = dist.log_prob(x)
    assert lp.shape == (3,)
    np.testing.assert_allclose(lp.numpy(), ref.reshape(3, -1).sum(1), rtol=1e-10)
    assert dist.sigma is None and dist.effective_beta is None
    torch.testing.assert_close(dist.base_dist.scale, scale)
    torch.testing.assert_close(dist.mean, loc)
    assert bool((dist.base_dist.df > DEFAULT_MIN_DF).all())
    assert bool(torch.isfinite(dist.variance).all())


def test_fixed_df_uses_two_params_per_channel_and_sigmoid_mean():
    head = create("student_t", df=4.5)
    assert head.params_per_channel() == 2 and head.param_channels(1) == 2
    params, x = _params_and_data(c=1, k=2)
    raw_loc, raw_scale = params[:, :1], params[:, 1:]
    ref = stats.t.logpdf(
        x.numpy(), 4.5, loc=torch.sigmoid(raw_loc).numpy(),
        scale=softclip(raw_scale, -6.0).exp().numpy(),
    )
    np.testing.assert_allclose(head(params).log_prob(x).numpy(), ref.reshape(3, -1).sum(1))


@pytest.mark.parametrize("df", [0.5, 1.0, 3.0, 30.0, 1000.0, 5.0e4, 1.0e7])
def test_cdf_matches_scipy(df):
    head = create("student_t", df=df, mean_activation="identity", min_log_scale=None)
    g = torch.Generator().manual_seed(1)
    loc = torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64)
    log_scale = torch.empty(2, 1, 8, 8, dtype=torch.float64).uniform_(-6, 1, generator=g)
    x = torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64)
    dist = head(torch.cat([loc, log_scale], 1))
    ref = stats.t.cdf(x.numpy(), df, loc=loc.numpy(), scale=log_scale.exp().numpy())
    np.testing.assert_allclose(dist.elementwise_cdf(x).numpy(), ref, rtol=1e-9, atol=1e-9)


def test_cdf_standardised_grid_and_float32():
    t = torch.cat([torch.linspace(-50, 50, 1001, dtype=torch.float64), torch.tensor([0.0])])
    for df in (0.3, 2.0, 7.5, 250.0, 2.0e4):
        nu = torch.tensor(df, dtype=torch.float64)
        cdf = student_t_cdf(t, nu, torch.zeros(()), torch.ones(()))
        np.testing.assert_allclose(cdf.numpy(), stats.t.cdf(t.numpy(), df), rtol=1e-9, atol=1e-10)
        dist = StudentTWithCdf(torch.tensor(df), torch.tensor(0.0), torch.tensor(1.0))
        c32 = dist.cdf(t.float())
        assert c32.dtype == torch.float32
        np.testing.assert_allclose(c32.double().numpy(), stats.t.cdf(t.numpy(), df), atol=1e-6)
    assert float(student_t_cdf(torch.tensor(0.0), torch.tensor(3.0), torch.zeros(()),
                               torch.ones(()))) == 0.5


def test_cdf_gradient_is_the_density_and_finite_at_the_location():
    x = torch.tensor([-2.0, -0.3, 0.0, 0.4, 3.0], dtype=torch.float64, requires_grad=True)
    dist = StudentTWithCdf(torch.tensor(3.5, dtype=torch.float64),
                           torch.tensor(0.0, dtype=torch.float64),
                           torch.tensor(0.7, dtype=torch.float64))
    (grad,) = torch.autograd.grad(dist.cdf(x).sum(), x)
    assert bool(torch.isfinite(grad).all())
    keep = x.detach() != 0  # at the location the CDF is pinned to 1/2 (zero gradient)
    torch.testing.assert_close(grad[keep], dist.log_prob(x.detach()).exp()[keep])


def test_log_gamma_ratio_against_mpmath_and_float32_log_prob_at_large_df():
    a = torch.tensor([1e-3, 0.25, 1.0, 7.5, 99.9, 100.0, 1e3, 1e5, 1e9], dtype=torch.float64)
    with mpmath.workdps(50):
        ref = [float(mpmath.loggamma(v + 0.5) - mpmath.loggamma(v)) for v in a.tolist()]
    np.testing.assert_allclose(log_gamma_half_ratio(a).numpy(), ref, rtol=1e-12, atol=1e-12)
    # torch.distributions.StudentT subtracts two lgamma values of ~1e7 in float32 here.
    df = torch.tensor([3.0, 1e3, 1e6, 1e8])
    x = torch.tensor([0.1, 0.5, 0.9, 0.3])
    lp = StudentTWithCdf(df, torch.full((4,), 0.45), torch.full((4,), 0.05)).log_prob(x)
    ref = stats.t.logpdf(x.double().numpy(), df.double().numpy(), loc=0.45, scale=0.05)
    np.testing.assert_allclose(lp.double().numpy(), ref, rtol=2e-6)


def test_gradcheck_float64():
    for opts, k in (({}, 3), ({"df": 3.0}, 2)):
        head = create("student_t", **opts).double()
        params, x = _params_and_data(b=2, c=2, h=2, w=2, k=k)
        params.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda p, h=head, x=x: h(p, target=x).log_prob(x),
                                        (params,))


@pytest.mark.parametrize("channels", [1, 3])
def test_param_channels_agree_with_what_the_head_consumes(channels):
    head = create("student_t")
    x = torch.rand(2, channels, 3, 3)
    good = torch.randn(2, head.param_channels(channels), 3, 3)
    assert head(good, target=x).log_prob(x).shape == (2,)
    expected = head.param_channels(channels)
    with pytest.raises(LikelihoodInputError, match=rf"param_channels\({channels}\) = {expected}"):
        head(torch.randn(2, 3 * channels + 3, 3, 3), target=x)
    with pytest.raises(LikelihoodInputError, match="not a multiple of 3"):
        head(torch.randn(2, 4, 3, 3))


def test_rejects_bad_data_and_options():
    head = create("student_t")
    params = torch.zeros(2, 3, 2, 2)
    with pytest.raises(LikelihoodInputError, match=r"\[0, 1\]"):
        head(params).log_prob(torch.full((2, 1, 2, 2), 1.5))
    with pytest.raises(ValueError, match="df must be"):
        create("student_t", df=0.0)
    with pytest.raises(ValueError, match="min_df"):
        create("student_t", min_df=-1.0)


def test_float32_extreme_params_are_finite_with_finite_gradients():
    head = create("student_t")
    params = (torch.randn(2, 9, 4, 4) * 40).requires_grad_(True)
    x = torch.rand(2, 3, 4, 4)
    lp = head(params, target=x).log_prob(x)
    (grad,) = torch.autograd.grad(lp.sum(), params)
    assert bool(torch.isfinite(lp).all()) and bool(torch.isfinite(grad).all())
    assert math.isfinite(float(head(params.detach()).mean.sum()))


@pytest.mark.parametrize("min_df", [0.5, 2.0])
def test_gradient_finite_when_the_standardised_value_underflows(min_df):
    # x = 0 with a location of sigmoid(-53) ~ 1e-23 and log-scale 51: y = diff / scale is
    # ~1e-46, below float32's smallest subnormal, so it rounds to 0 although diff != 0 (a
    # hypothesis-found case whose gradient was NaN). log p = -log_scale - const there.
    head = create("student_t", min_df=min_df)
    params = torch.zeros(1, 3, 1, 1)
    params[0, 0], params[0, 1], params[0, 2] = -53.0, 51.0, 0.0
    params.requires_grad_(True)
    x = torch.zeros(1, 1, 1, 1)
    lp = head(params, target=x).log_prob(x)
    (grad,) = torch.autograd.grad(lp.sum(), params)
    assert bool(torch.isfinite(grad).all()), grad
    assert float(grad[0, 1]) == pytest.approx(-1.0, abs=1e-6)  # d(-log_scale) / d(log_scale)
    df = min_df + math.log(2.0)
    expected = stats.t.logpdf(0.0, df, loc=0.0, scale=math.exp(51.0))
    assert float(lp.detach()) == pytest.approx(expected, rel=1e-6)


def test_unclipped_absurd_scales_stay_finite_in_float32():
    head = create("student_t", min_log_scale=None, min_df=1e-3)
    for magnitude in (100.0, 1e4):
        params = (torch.randn(2, 9, 3, 3) * magnitude).requires_grad_(True)
        x = torch.rand(2, 3, 3, 3)
        dist = head(params, target=x)
        lp = dist.log_prob(x)
        (grad,) = torch.autograd.grad(lp.sum(), params)
        assert bool(torch.isfinite(lp).all()) and bool(torch.isfinite(grad).all())
        assert bool(torch.isfinite(dist.elementwise_cdf(x)).all())
