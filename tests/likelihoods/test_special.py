"""The special functions of sigmavae.likelihoods.special against scipy.special (float64)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.special as sc
import torch

from sigmavae.likelihoods import special


def test_log1mexp_matches_mpmath_on_both_sides_of_ln2():
    u = torch.logspace(-12, 2.5, 400, dtype=torch.float64)
    with mpmath.workdps(50):
        ref = np.array([float(mpmath.log1p(-mpmath.exp(-mpmath.mpf(float(v))))) for v in u])
    np.testing.assert_allclose(special.log1mexp(u).numpy(), ref, rtol=1e-13)
    grad = torch.autograd.grad(special.log1mexp(u.requires_grad_()).sum(), u)[0]
    assert torch.isfinite(grad).all()


def test_log_ndtr_and_its_gradient_match_scipy_and_mpmath():
    z = torch.linspace(-1e3, 30, 2001, dtype=torch.float64, requires_grad=True)
    value = special.log_ndtr(z)
    np.testing.assert_allclose(value.detach().numpy(), sc.log_ndtr(z.detach().numpy()),
                               rtol=1e-13)
    (grad,) = torch.autograd.grad(value.sum(), z)
    zn = z.detach().numpy()
    sub = zn[::50]
    with mpmath.workdps(60):
        ref = np.array([float(mpmath.npdf(v) / mpmath.ncdf(v)) for v in sub.tolist()])
    np.testing.assert_allclose(grad.numpy()[::50], ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(special.ndtr_hazard(torch.from_numpy(sub)).numpy(), ref,
                               rtol=1e-12, atol=1e-300)


def test_softplus_is_exact_for_large_inputs():
    x = torch.tensor([-800.0, -30.0, -1.0, 0.0, 1.0, 30.0, 800.0], dtype=torch.float64)
    np.testing.assert_allclose(special.softplus(x).numpy(), np.logaddexp(0.0, x.numpy()),
                               rtol=1e-15, atol=1e-300)


def test_log_gamma_half_ratio_matches_gammaln_and_mpmath():
    small = torch.logspace(-3, 2, 100, dtype=torch.float64)  # no cancellation in the reference
    ref = sc.gammaln(small.numpy() + 0.5) - sc.gammaln(small.numpy())
    np.testing.assert_allclose(special.log_gamma_half_ratio(small).numpy(), ref, rtol=1e-12,
                               atol=1e-12)
    big = torch.logspace(2, 9, 40, dtype=torch.float64)  # the asymptotic series
    with mpmath.workdps(50):
        ref = [float(mpmath.loggamma(v + 0.5) - mpmath.loggamma(v)) for v in big.tolist()]
    np.testing.assert_allclose(special.log_gamma_half_ratio(big).numpy(), ref, rtol=1e-12)
    assert special.log_gamma_half_ratio(big.float()).dtype == torch.float32


@pytest.mark.parametrize("b", [0.5, 1.0, 3.7])
def test_betainc_matches_scipy_on_both_sides_of_the_switch(b):
    g = torch.Generator().manual_seed(0)
    a = torch.exp(torch.rand(500, generator=g, dtype=torch.float64) * 12 - 4)  # 0.02 .. 3000
    x = torch.rand(500, generator=g, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    got = special.betainc(a, torch.full_like(a, b), x.log(), torch.log1p(-x))
    ref = sc.betainc(a.numpy(), b, x.numpy())
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)


def test_betainc_is_differentiable_and_float64():
    a = torch.tensor([0.7, 2.0, 40.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    value = special.betainc(a, torch.full_like(a, 0.5), x.log(), torch.log1p(-x))
    assert value.dtype == torch.float64
    (grad,) = torch.autograd.grad(value.sum(), a)
    eps = 1e-6
    numeric = (sc.betainc(a.detach().numpy() + eps, 0.5, x.numpy())
               - sc.betainc(a.detach().numpy() - eps, 0.5, x.numpy())) / (2 * eps)
    np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-5, atol=1e-9)
