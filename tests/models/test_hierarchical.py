"""The 15-layer hierarchical VAE: structure, the per-layer KL against torch.distributions, the
consistency of the KL with the importance weights, IWAE, prior sampling, training and eval."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from sigmavae import likelihoods
from sigmavae.metrics import evaluate
from sigmavae.metrics.iwae import importance_noise, iwae_per_image
from sigmavae.models import HierarchicalVAE, build_hierarchical_vae, build_model
from sigmavae.models.hierarchical import gaussian_kl
from sigmavae.objective import elbo_terms, log_importance_weights, reconstruct, sample
from sigmavae.training import TrainConfig, Trainer, load_trained


def _small(shape=(3, 32, 32), head="learned_sigma", **kw) -> HierarchicalVAE:
    torch.manual_seed(0)
    options = {"latent_dim": 2, "width": 8, **kw}
    return build_hierarchical_vae(shape, likelihoods.create(head), **options)


def _perturb_posteriors(model: HierarchicalVAE) -> None:
    """Posteriors start equal to the priors (zero-initialised correction): move them away."""
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.posterior.weight.normal_(0.0, 0.05)
            layer.posterior.bias.normal_(0.0, 0.3)


def test_posteriors_start_equal_to_the_priors() -> None:
    model = _small()
    terms = elbo_terms(model, torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    torch.testing.assert_close(terms.kl, torch.zeros(2))


def test_default_structure_is_15_layers_over_3_resolutions() -> None:
    model = build_hierarchical_vae((3, 32, 32), likelihoods.create("optimal_sigma"))
    assert model.num_latent_layers == 15
    shapes = model.decoder.latent_shapes
    assert shapes[:5] == [(8, 4, 4)] * 5 and shapes[5:10] == [(8, 8, 8)] * 5
    assert shapes[10:] == [(8, 16, 16)] * 5
    assert model.latent_dim == 5 * 8 * (16 + 64 + 256)
    assert isinstance(build_model("hierarchical", (3, 32, 32), likelihoods.create("gaussian")),
                      HierarchicalVAE)


@pytest.mark.parametrize("shape", [(1, 28, 20), (3, 32, 32), (3, 9, 13)])
@pytest.mark.parametrize("head", ["optimal_sigma", "categorical", "logistic_mixture"])
def test_any_size_and_head_gives_full_size_parameters(shape, head) -> None:
    model = _small(shape, head)
    images = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    terms = elbo_terms(model, images)
    assert terms.nll.shape == terms.kl.shape == (2,)
    assert torch.isfinite(terms.loss) and (terms.kl >= 0).all()
    assert reconstruct(model, images).shape == (2, *shape)
    assert sample(model, 3).shape == (3, *shape)


def test_gaussian_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mq, mp = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    lq, lp = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    reference = kl_divergence(Normal(mq, lq.exp()), Normal(mp, lp.exp())).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), reference)


def test_one_layer_kl_is_the_analytic_kl_to_its_prior() -> None:
    """With one stochastic layer the prior is a fixed Gaussian: check the KL by recomputing the
    prior and posterior from the layer's own convolutions with torch.distributions."""
    model = _small(layers=1, stages=1).eval()
    _perturb_posteriors(model)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    terms = elbo_terms(model, images, noise=torch.zeros(3, model.latent_dim))
    layer = model.decoder.layers[0]
    h = model.decoder.start.expand(3, -1, -1, -1)
    feature = model.encoder(images.float() / 255)[0]
    mp, lp = layer.prior(h).chunk(2, 1)
    dm, dl = layer.posterior(torch.cat([h, feature], 1)).chunk(2, 1)
    bound = lambda raw: 4.0 * torch.tanh(raw / 4.0)  # noqa: E731  LOG_SIGMA_BOUND
    reference = kl_divergence(Normal(mp + dm, bound(lp + dl).exp()), Normal(mp, bound(lp).exp()))
    torch.testing.assert_close(terms.kl, reference.flatten(1).sum(1), rtol=1e-5, atol=1e-4)


def test_kl_is_the_expected_log_ratio_over_all_layers() -> None:
    """E_q[log q(z|x) - log p(z)] over the whole hierarchy equals E[sum of per-layer analytic
    KLs]: Monte Carlo over 4000 draws for one image, within 4 standard errors."""
    model = _small(layers=6, stages=3).eval()
    _perturb_posteriors(model)
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(4000, -1, -1, -1)
    noise = torch.randn(4000, model.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        terms = elbo_terms(model, image, noise=noise)
        log_w = log_importance_weights(model, image, noise)
    minus_log_ratio = -(log_w + terms.nll)  # log q - log p at each draw
    diff = (minus_log_ratio - terms.kl).double()
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(diff.numel()) + 1e-3
    assert terms.kl.std() > 0  # the upper layers' samples make the lower layers' KL random


def test_iwae_with_one_sample_is_the_elbo_at_the_same_noise() -> None:
    model = _small(layers=3, stages=3).eval()
    _perturb_posteriors(model)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    bounds = iwae_per_image(model, images, samples=64, ks=[1, 64], batch_size=32)
    # L_64 uses the same first draw: logsumexp(w) - log 64 >= w_1 - log 64.
    assert (bounds[64] >= bounds[1] - math.log(64) - 1e-6).all()
    # K = 1 with image i's first draw is the single-sample ELBO at that noise.
    noise = torch.stack([importance_noise(0, i, 1, model.latent_dim, torch.Generator())[0]
                         for i in range(4)]).float()
    with torch.no_grad():
        elbo = elbo_terms(model, images, noise=noise)
    log_ratio = log_importance_weights(model, images, noise) + elbo.nll
    torch.testing.assert_close(bounds[1], (-elbo.nll + log_ratio).double(), rtol=1e-5, atol=1e-3)


def test_prior_decoder_is_deterministic_in_its_noise() -> None:
    model = _small().eval()
    eps = torch.randn(2, model.latent_dim)
    torch.testing.assert_close(model.generate(eps), model.generate(eps.clone()))
    with pytest.raises(ValueError, match="noise must have shape"):
        model.generate(torch.randn(2, 5))


def test_bad_structure_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="multiple of stages"):
        _small(layers=7, stages=3)
    with pytest.raises(ValueError, match="too small"):
        _small((1, 4, 4))
    with pytest.raises(ValueError, match="model 'hierarchical'"):
        build_model("hierarchical", (3, 32, 32), likelihoods.create("gaussian"), channels=3)


@pytest.mark.slow
def test_trains_on_frey_and_evaluates(tmp_path) -> None:
    cfg = TrainConfig(data="frey", model="hierarchical", train_subset=512, val_subset=128,
                      batch_size=64, epochs=4, out=str(tmp_path), progress=False,
                      model_options={"width": 16}, latent_dim=4)
    Trainer(cfg).fit()
    with (tmp_path / "epochs.csv").open() as f:
        rows = list(csv.DictReader(f))
    first, last = float(rows[0]["val_neg_elbo"]), float(rows[-1]["val_neg_elbo"])
    assert last < first - 100.0, (first, last)  # nats per 28x20 image
    model, config = load_trained(tmp_path / "checkpoints" / "last.ckpt")
    assert isinstance(model, HierarchicalVAE) and config == cfg
    images = torch.randint(0, 256, (16, 1, 28, 20), dtype=torch.uint8)
    report = evaluate(model, images, metrics=["elbo", "iwae", "mi", "active_units"],
                      options={"iwae_samples": 4})
    metrics = report["metrics"]
    assert metrics["elbo"]["available"] and metrics["iwae"]["available"]
    for name in ("mi", "active_units"):
        assert metrics[name]["available"] is False
        assert "not one diagonal Gaussian" in metrics[name]["reason"]
