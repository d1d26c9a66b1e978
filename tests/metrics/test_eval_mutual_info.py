"""Mutual information I_e(x;z) and marginal KL on constructed posteriors with known values."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from sigmavae.metrics import EvalContext, count_active_units, mutual_information
from sigmavae.metrics import active_units as au_metric
from sigmavae.metrics import mutual_info as mi_metric
from sigmavae.metrics.mutual_info import log_posterior_matrix


def test_log_posterior_matrix_matches_torch():
    g = torch.Generator().manual_seed(0)
    mu, sigma = torch.randn(7, 3, generator=g), torch.rand(7, 3, generator=g) + 0.1
    z = torch.randn(5, 3, generator=g)
    expected = torch.distributions.Normal(mu.double(), sigma.double()).log_prob(
        z.double().unsqueeze(1)).sum(-1)
    torch.testing.assert_close(log_posterior_matrix(z, mu, sigma), expected)


def gaussian_channel(n: int, a2: float, v: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Posteriors ``q(z|x) = N(a x, v)`` of ``n`` points ``x ~ N(0, 1)`` (a quantile grid):
    ``m(z) = N(0, a^2 + v)``, so ``I = 1/2 log((a^2 + v) / v)`` and
    ``D_KL(m || N(0, 1)) = (t - 1 - log t) / 2`` with ``t = a^2 + v``."""
    x = torch.from_numpy(norm.ppf((torch.arange(n) + 0.5).numpy() / n))
    mu = (math.sqrt(a2) * x).unsqueeze(1)
    return mu, torch.full_like(mu, math.sqrt(v))


def test_gaussian_channel_has_the_analytic_information_and_marginal_kl():
    n, a2, v = 2000, 3.0, 1.0
    mu, sigma = gaussian_channel(n, a2, v)
    est = mutual_information(mu, sigma, samples=10_000, generator=torch.Generator().manual_seed(1))
    t = a2 + v
    assert est.mutual_info == pytest.approx(0.5 * math.log(t / v), abs=4 * est.mutual_info_stderr
                                            + 0.01)
    kl_m = 0.5 * (t - 1 - math.log(t))
    assert est.marginal_kl == pytest.approx(kl_m, abs=4 * est.marginal_kl_stderr + 0.01)
    assert est.marginal_kl_direct == pytest.approx(kl_m, abs=4 * est.marginal_kl_direct_stderr
                                                   + 0.01)
    assert est.rate == pytest.approx(est.mutual_info + est.marginal_kl)  # eq. 6, exactly
    assert est.num_data == n and est.num_samples == 10_000


def test_separated_posteriors_carry_log_n_nats():
    # 16 posteriors far apart and narrow: every z identifies its x, so I = log N exactly and
    # the marginal KL is the rest of the rate.
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1)
    mu = grid.reshape(16, 2) * 3.0 - 4.5
    sigma = torch.full_like(mu, 0.01)
    est = mutual_information(mu, sigma, samples=1600)
    assert est.mutual_info == pytest.approx(math.log(16), abs=1e-9)
    assert est.mutual_info_stderr < 1e-9
    assert est.marginal_kl == pytest.approx(est.rate - math.log(16))
    assert est.marginal_kl_direct == pytest.approx(est.marginal_kl, abs=4 *
                                                   est.marginal_kl_direct_stderr + 1e-6)


def test_leave_one_out_brackets_the_information_from_above():
    # the Gaussian channel with few points: the in-sample estimate is pulled towards its
    # ceiling log N from below, the leave-one-out one lies above the analytic value
    n, a2, v = 64, 400.0, 1.0
    mu, sigma = gaussian_channel(n, a2, v)
    est = mutual_information(mu, sigma, samples=64_000, generator=torch.Generator().manual_seed(2))
    exact = 0.5 * math.log((a2 + v) / v)  # 3.0 nats, near log 64 = 4.16
    assert est.mutual_info < exact - 4 * est.mutual_info_stderr
    assert est.mutual_info_upper > exact + 4 * est.mutual_info_upper_stderr
    assert est.mutual_info <= math.log(n) + 1e-9 < est.mutual_info_upper + 1.0


def test_separated_posteriors_have_no_ceiling_leave_one_out():
    # far-apart narrow posteriors: the in-sample estimate sits at log N, the leave-one-out one
    # is far above it (the data identify z far better than log N says)
    mu = torch.arange(16.0).unsqueeze(1) * 3.0
    sigma = torch.full_like(mu, 0.01)
    est = mutual_information(mu, sigma, samples=1600)
    assert est.mutual_info == pytest.approx(math.log(16), abs=1e-9)
    assert est.mutual_info_upper > math.log(16) + 100


def test_collapsed_posteriors_carry_no_information():
    mu, sigma = torch.zeros(50, 4), torch.ones(50, 4)
    est = mutual_information(mu, sigma, samples=500)
    assert est.mutual_info == pytest.approx(0.0, abs=1e-12)
    assert est.mutual_info_upper == pytest.approx(0.0, abs=1e-12)
    assert est.marginal_kl == pytest.approx(0.0, abs=1e-12)


def test_active_units():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([1.0, 0.5, 0.2, 0.01, 0.0])
    mu = torch.randn(2000, 5, generator=g) * scales
    out = count_active_units(mu)
    assert out["active_units"] == 3 and out["active_indices"] == [0, 1, 2]
    assert out["variance_of_posterior_mean"][0] == pytest.approx(1.0, rel=0.1)
    assert count_active_units(mu, threshold=0.3)["active_units"] == 1


def test_mi_and_active_units_metrics_on_a_trained_model(frey_model, frey_test_images):
    ctx = EvalContext(frey_model, frey_test_images, batch_size=7, options={"mi_samples": 480})
    mi = mi_metric.run(ctx)
    assert mi["num_data"] == 24 and mi["num_samples"] == 480
    assert 0 <= mi["mutual_info_nats"] <= math.log(24) + 1e-9
    assert mi["rate_kl_nats"] == pytest.approx(mi["mutual_info_nats"] + mi["marginal_kl_nats"])
    assert mi_metric.run(EvalContext(frey_model, frey_test_images, options={"mi_data": 10}))[
        "num_data"] == 10
    au = au_metric.run(ctx)
    assert au["latent_dim"] == 20 and 0 <= au["active_units"] <= 20
    assert len(au["variance_of_posterior_mean"]) == 20
