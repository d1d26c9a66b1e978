"""Discretised likelihood of continuous heads: normalised over the 256 bins, matches scipy and the
discrete discretised-Gaussian head, and the discretised ELBO metric."""

from __future__ import annotations

import itertools
import math

import pytest
import scipy.stats
import torch

from sigmavae.dataset_elbo import elbo_per_image
from sigmavae.likelihoods import (
    BinnedNormal,
    DiscretizedGaussianHead,
    FixedSigmaGaussian,
    ImageLikelihood,
    StudentTWithCdf,
)
from sigmavae.metrics import EvalContext, discretized_log_mass
from sigmavae.metrics import discretized as disc_metric

LEVELS = torch.arange(256, dtype=torch.float64)
LOCS = [-0.3, 0.0, 0.001, 0.37, 0.5, 0.999, 1.0, 1.4]
SCALES = [1e-7, 1e-3, 1 / 255, 0.02, 0.3, 5.0, 1e4]


def _all_levels(base_factory, locs, scales) -> torch.Tensor:
    """log-masses of all 256 intensities for every (loc, scale): (combos, 256) float64."""
    combos = list(itertools.product(locs, scales))
    loc = torch.tensor([c[0] for c in combos]).unsqueeze(1).expand(-1, 256)
    scale = torch.tensor([c[1] for c in combos]).unsqueeze(1).expand(-1, 256)
    dist = ImageLikelihood(base_factory(loc.float(), scale.float()), "unit", validate_args=False)
    target = (LEVELS / 255).float().expand(len(combos), 256)
    return discretized_log_mass(dist, target)


def test_discretized_gaussian_sums_to_one_over_the_256_bins():
    log_mass = _all_levels(lambda m, s: BinnedNormal(m, s, validate_args=False), LOCS, SCALES)
    assert torch.isfinite(log_mass).all()
    total = torch.logsumexp(log_mass, dim=1).exp()
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)


@pytest.mark.parametrize("df", [2.5, 5.0, 40.0, 2e4])
def test_discretized_student_t_sums_to_one(df):
    log_mass = _all_levels(lambda m, s: StudentTWithCdf(torch.full_like(m, df), m, s),
                           LOCS[1:-1], SCALES[1:-1])
    assert torch.isfinite(log_mass).all()
    total = torch.logsumexp(log_mass, dim=1).exp()
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["gaussian", "student_t"])
def test_bin_masses_match_scipy(family):
    g = torch.Generator().manual_seed(0)
    loc = torch.rand(40, 1, generator=g, dtype=torch.float64) * 1.2 - 0.1
    scale = torch.exp(torch.rand(40, 1, generator=g, dtype=torch.float64) * 6 - 7)  # 1e-3..0.4
    x = torch.randint(0, 256, (40, 1), generator=g).double()
    lo = torch.where(x == 0, -math.inf, (x - 0.5) / 255)
    hi = torch.where(x == 255, math.inf, (x + 0.5) / 255)
    if family == "gaussian":
        base = BinnedNormal(loc.float(), scale.float(), validate_args=False)
        ref = scipy.stats.norm
        args: tuple = ()
    else:
        base = StudentTWithCdf(torch.full_like(loc, 4.0).float(), loc.float(), scale.float())
        ref = scipy.stats.t
        args = (4.0,)
    loc32, scale32 = base.loc.double().numpy(), base.scale.double().numpy()
    expected = ref.cdf(hi.numpy(), *args, loc=loc32, scale=scale32) - ref.cdf(
        lo.numpy(), *args, loc=loc32, scale=scale32)
    ok = expected > 1e-250  # compare where scipy's difference is representable
    got = discretized_log_mass(ImageLikelihood(base, "unit", validate_args=False), x / 255)
    torch.testing.assert_close(got[torch.from_numpy(ok)],
                               torch.from_numpy(expected[ok]).log(), rtol=1e-5, atol=1e-7)


def test_agrees_with_the_discretized_gaussian_head():
    g = torch.Generator().manual_seed(1)
    loc = torch.rand(3, 2, 5, 4, generator=g)
    x = torch.randint(0, 256, (3, 2, 5, 4), generator=g)
    for sigma in (0.002, 0.05, 0.4):
        cont = FixedSigmaGaussian(sigma=sigma, mean_activation="identity")(loc)
        ours = discretized_log_mass(cont, x.float() / 255)
        head = DiscretizedGaussianHead(scale=sigma, mean_activation="identity")
        theirs = head(loc.double()).elementwise_log_prob(x)
        torch.testing.assert_close(ours, theirs.double(), rtol=1e-6, atol=1e-6)


def test_discretized_metric_on_a_trained_model(frey_model, frey_test_images):
    ctx = EvalContext(frey_model, frey_test_images[:8], batch_size=5, seed=2)
    result = disc_metric.run(ctx)
    assert result["available"] and result["samples_per_image"] == 1
    dims = frey_model.data_dims
    # a probability mass on 8-bit data: -log P >= 0, and the same z as the continuous -ELBO
    assert result["distortion_nll_nats_per_image"] > 0
    # the same batches as the metric (batch_size 5): float32 convolutions round differently
    # for other batch sizes (~1e-7 relative), which would hide nothing but breaks rel=1e-9
    cont = -elbo_per_image(frey_model, frey_test_images[:8], batch_size=5, samples=1,
                           seed=2).neg_elbo.mean()
    assert result["continuous_neg_elbo_nats_per_image"] == pytest.approx(-float(cont), rel=1e-9)
    # with sigma well above a bin width, P(bin) ~ p(x/255) / 255 in every dimension
    gap = result["neg_elbo_nats_per_image"] - result["continuous_neg_elbo_nats_per_image"]
    assert gap == pytest.approx(dims * math.log(255), rel=1e-3)
    assert result["neg_elbo_bits_per_dim"] == pytest.approx(
        result["neg_elbo_nats_per_image"] / (dims * math.log(2)))
