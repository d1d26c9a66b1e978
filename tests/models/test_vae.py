"""The VAE container and the paper's conv networks."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from sigmavae.likelihoods import create, names
from sigmavae.models import build_conv_vae, build_model, kl_to_standard_normal, prepare_batch
from sigmavae.objective import elbo_terms, reconstruct, sample


@pytest.mark.parametrize("shape", [(1, 28, 20), (3, 28, 28), (3, 32, 32), (3, 64, 64), (1, 21, 17)])
def test_conv_vae_shapes_for_every_supported_size(shape):
    model = build_conv_vae(shape, create("per_pixel_sigma"))
    z = torch.randn(2, 20)
    assert model.decoder(z).shape == (2, 2 * shape[0], *shape[1:])
    images = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    terms = elbo_terms(model, images)
    assert terms.nll.shape == terms.kl.shape == (2,)
    assert sample(model, 3).shape == (3, *shape)
    assert reconstruct(model, images).shape == (2, *shape)
    # the thin methods kept for compatibility are the objective's functions
    torch.testing.assert_close(model.reconstruct(images), reconstruct(model, images))


def test_architecture_matches_the_paper_appendix_b():
    model = build_conv_vae((3, 28, 28), create("gaussian"))
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    deconvs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(deconvs) == 3 and deconvs[-1].out_channels == 3
    assert model.latent_dim == 20
    assert model.encoder.to_latent.out_features == 40  # mean and log-variance


@pytest.mark.parametrize("name", names())
def test_every_head_fits_the_model(name):
    opts = {"beta": 0.01} if name == "fixed_sigma" else {}
    model = build_conv_vae((3, 16, 16), create(name, **opts))
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    terms = elbo_terms(model, images)
    terms.loss.backward()
    assert torch.isfinite(terms.loss)
    grads = [p.grad for p in model.decoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    samples = sample(model, 2)
    assert samples.min() >= 0 and samples.max() <= 1


def test_kl_matches_torch_distributions():
    mu, sigma = torch.randn(5, 7), torch.rand(5, 7) + 0.1
    q = torch.distributions.Independent(Normal(mu, sigma), 1)
    ref = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(q), ref)


def test_loss_is_nll_plus_beta_kl_and_elbo_is_unweighted():
    torch.manual_seed(0)
    model = build_conv_vae((1, 28, 20), create("fixed_sigma", sigma=0.1))
    images = torch.randint(0, 256, (8, 1, 28, 20), dtype=torch.uint8)
    torch.manual_seed(1)
    t1 = elbo_terms(model, images, beta=1.0)
    torch.manual_seed(1)
    t5 = elbo_terms(model, images, beta=5.0)
    torch.testing.assert_close(t1.elbo, t5.elbo)
    torch.testing.assert_close(t5.loss, (t5.nll + 5.0 * t5.kl).mean())
    assert model.data_dims == 560


def test_prepare_batch_scaling():
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    x, target = prepare_batch(images, create("gaussian"))
    assert x.tolist() == [[[[0.0, 1.0]]]] and target.dtype == torch.float32
    head = create("gaussian")
    x2, _ = prepare_batch(images.float() / 255, head)
    torch.testing.assert_close(x2, x)


def test_model_registry_error():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet", (1, 28, 28), create("gaussian"))
    with pytest.raises(ValueError, match="H, W >= 4"):
        build_conv_vae((1, 2, 2), create("gaussian"))


def test_gaussian_vae_reproduces_the_paper_unit_variance_constant():
    """With sigma = 1 and a perfect mean, -log p(x|z) = D log sqrt(2 pi) nats."""
    head = create("gaussian", mean_activation="identity")
    x = torch.rand(2, 3, 4, 4)
    nll = -head(x.clone()).log_prob(x)
    torch.testing.assert_close(nll, torch.full((2,), 48 * 0.5 * math.log(2 * math.pi)))
