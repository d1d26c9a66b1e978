"""IWAE and ELBO against a linear-Gaussian VAE with analytic log p(x), and on a trained model."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn

from sigmavae import likelihoods
from sigmavae.metrics import (
    EvalContext,
    elbo_per_image,
    evaluate_elbo,
    iwae_per_image,
    log_importance_weights,
)
from sigmavae.metrics import iwae as iwae_metric
from sigmavae.metrics.iwae import default_ks, importance_noise, iwae_from_weights
from sigmavae.objective import elbo_terms, posterior_decoder


def test_linear_gaussian_elbo_gap_is_the_kl_to_the_true_posterior(linear_gaussian):
    lg = linear_gaussian
    log_px, kl = lg.log_px(), lg.kl_to_true_posterior()
    assert float(kl.min()) > 0.05  # the encoder is clearly imperfect
    k = 4000
    log_w = log_importance_weights(lg.model, lg.data, k, seed=3, batch_size=4000)
    elbo_mc = log_w.mean(1)  # E_q[log p(x, z) - log q(z|x)] per image
    se = log_w.std(1) / math.sqrt(k)
    gap = log_px - elbo_mc
    assert torch.all((gap - kl).abs() < 5 * se + 2e-3), (gap, kl, se)
    # over all images: the mean gap is the mean KL to well within 1%
    assert abs(float((gap - kl).mean())) < 4 * float(se.pow(2).mean().sqrt()) / math.sqrt(
        gap.numel()) + 1e-3
    # the ELBO code path (objective.elbo_terms) agrees with the importance weights on average
    terms = elbo_per_image(lg.model, lg.data, samples=400, seed=1)
    per_image_se = float(se.max()) * math.sqrt(k / 400)
    assert torch.all((-terms.neg_elbo - (log_px - kl)).abs() < 5 * per_image_se + 2e-3)


def test_linear_gaussian_iwae_converges_to_log_px(linear_gaussian):
    lg = linear_gaussian
    log_px = lg.log_px()
    ks = [1, 3, 10, 100, 1000, 3000]
    bounds = iwae_per_image(lg.model, lg.data, samples=3000, ks=ks, seed=0, batch_size=6000)
    gaps = {k: float((log_px - v).mean()) for k, v in bounds.items()}
    assert gaps[1] > 0.3
    # non-decreasing in K in expectation: every paired increase is >= -3 standard errors
    for a, b in itertools.pairwise(ks):
        diff = bounds[b] - bounds[a]
        assert float(diff.mean()) > -3 * float(diff.std()) / math.sqrt(diff.numel()), (a, b, gaps)
    assert gaps[1] > gaps[10] + 0.2 and gaps[10] > gaps[1000]
    # ... and converges to the analytic log p(x)
    assert abs(gaps[3000]) < 0.01, gaps
    err = (bounds[3000] - log_px).abs()
    assert float(err.mean()) < 0.02 and float(err.quantile(0.9)) < 0.05, err


def test_log_weights_are_batch_size_invariant(linear_gaussian):
    lg = linear_gaussian
    a = log_importance_weights(lg.model, lg.data[:4], 50, seed=5, batch_size=7)
    b = torch.cat([log_importance_weights(lg.model, lg.data[i:i + 1], 50, seed=5,
                                          batch_size=1000, first_index=i) for i in range(4)])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)  # float32 decoder, other batches
    full = iwae_per_image(lg.model, lg.data[:4], 50, ks=[50], seed=5, batch_size=3)[50]
    torch.testing.assert_close(full, iwae_from_weights(a), rtol=0, atol=1e-4)


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(1000) == [1, 10, 100, 1000]
    assert default_ks(250) == [1, 10, 100, 250]


def test_iwae_beats_elbo_and_grows_with_k_on_a_trained_model(frey_model, frey_test_images):
    images = frey_test_images
    log_w = log_importance_weights(frey_model, images, 64, seed=0)
    # per image and exactly (Jensen, same samples): L_64 >= the 64-sample average ELBO
    assert torch.all(iwae_from_weights(log_w) >= log_w.mean(1) - 1e-9)
    bounds = {k: iwae_from_weights(log_w, k) for k in (1, 4, 16, 64)}
    means = {k: float(v.mean()) for k, v in bounds.items()}
    assert means[1] <= means[4] <= means[16] <= means[64], means
    gain = bounds[64] - bounds[1]  # paired: the same first sample
    assert float(gain.mean()) > 3 * float(gain.std() / math.sqrt(gain.numel()))
    report = evaluate_elbo(frey_model, images, samples=8, seed=0)
    assert means[64] > -report.neg_elbo  # log-likelihood bound above the (8-sample) ELBO


def test_float64_model_gets_iwae_that_agrees_with_float32(frey_model, frey_test_images):
    images = frey_test_images[:8]
    double = copy.deepcopy(frey_model).double()
    bounds64 = iwae_per_image(double, images, 16, ks=[1, 16], seed=2, batch_size=32)
    bounds32 = iwae_per_image(frey_model, images, 16, ks=[1, 16], seed=2, batch_size=32)
    for k in (1, 16):
        assert bounds64[k].dtype == torch.float64
        # the same weights and noise: float32 rounding only (the bounds are ~ -1e3 nats)
        torch.testing.assert_close(bounds64[k], bounds32[k], rtol=1e-5, atol=1e-2)
    # the metric entry point (what `sigmavae eval --metrics iwae` runs) works on it too
    out = iwae_metric.run(EvalContext(double, images, batch_size=32, seed=2,
                                      options={"iwae_samples": 16}))
    assert out["neg_iwae_nats_per_image"] == pytest.approx(-float(bounds64[16].mean()), rel=1e-12)


def test_float64_one_sample_iwae_is_the_single_sample_elbo_with_the_same_noise(frey_model,
                                                                             frey_test_images):
    images = frey_test_images[:8]
    double = copy.deepcopy(frey_model).double()
    log_w = log_importance_weights(double, images, 1, seed=4)[:, 0]
    generator = torch.Generator()
    noise = torch.cat([importance_noise(4, i, 1, double.latent_dim, generator)
                       for i in range(images.shape[0])])
    with torch.no_grad():
        terms = elbo_terms(double, images, noise=noise)  # the ELBO path
    z = terms.z
    log_prior = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
    elbo_one_sample = -terms.nll + log_prior - terms.posterior.log_prob(z)  # Monte Carlo KL
    torch.testing.assert_close(log_w, elbo_one_sample, rtol=0, atol=1e-9)


class ForwardOnly(nn.Module):
    """The same network through the protocol's required members only (no ``decode_posterior``):
    every (image, sample) row goes through ``forward``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head, self.latent_dim, self.data_shape = model.head, model.latent_dim, model.data_shape

    def forward(self, x, noise=None):
        return self.model(x, noise)

    def generate(self, noise):
        return self.model.generate(noise)


def test_a_vae_is_encoded_once_per_image_with_the_same_weights(frey_model, frey_test_images):
    """The VAE fast path (``decode_posterior``: one encoding per image for its K rows) gives the
    weights of encoding every (image, sample) row, and runs the encoder on each image once."""
    images, samples = frey_test_images[:6], 40
    model = copy.deepcopy(frey_model)
    assert posterior_decoder(model) is model
    encoded = []
    model.encoder.register_forward_hook(lambda module, args, out: encoded.append(len(out)))
    fast = log_importance_weights(model, images, samples, seed=2, batch_size=64)
    assert encoded == [6]
    generic_model = ForwardOnly(model)
    assert posterior_decoder(generic_model) is None
    encoded.clear()
    generic = log_importance_weights(generic_model, images, samples, seed=2, batch_size=64)
    assert sum(encoded) == 6 * samples  # the generic path encodes every row
    torch.testing.assert_close(fast, generic, rtol=1e-5, atol=1e-3)


def test_a_subclass_with_its_own_forward_is_not_decoded_as_a_vae():
    """``decode_posterior`` decodes as ``VAE.forward`` does: a subclass that redefines
    ``forward`` (the hierarchical VAE) does not have it, unless it redefines it too."""
    from sigmavae.models import VAE, build_model
    from sigmavae.models.hierarchical import HierarchicalVAE

    assert HierarchicalVAE.decode_posterior is None
    model = build_model("hierarchical", (1, 8, 8), likelihoods.create("gaussian"), latent_dim=2,
                        layers=2, stages=2, width=4)
    assert posterior_decoder(model) is None

    class Both(VAE):
        def forward(self, x, noise=None):
            return super().forward(x, noise)

        def decode_posterior(self, q, noise=None):
            return super().decode_posterior(q, noise)

    assert callable(Both.decode_posterior)
