"""A user's own model: a plain ``nn.Module`` that follows the protocol of ``sigmavae.objective``
(not a subclass of our VAE) gets the ELBO, IWAE and every metric that applies through the public
API; so do a head and a model that a user registers from outside the package.

:class:`UserVAE` and :func:`build_user_vae` are written to be reused (e.g. to train the model with
``Trainer`` after registering the builder with ``sigmavae.models.register_model``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Laplace, Normal

from sigmavae import likelihoods
from sigmavae.likelihoods import ImageLikelihood, LikelihoodHead
from sigmavae.metrics import (
    EvalContext,
    MetricUnavailable,
    elbo_per_image,
    evaluate,
    evaluate_elbo,
    iwae_per_image,
    log_importance_weights,
)
from sigmavae.metrics import active_units as au_metric
from sigmavae.metrics import iwae as iwae_metric
from sigmavae.metrics import mutual_info as mi_metric
from sigmavae.metrics.iwae import importance_noise, iwae_from_weights
from sigmavae.models import MODELS, VAE, ModelOutput, build_model, register_model
from sigmavae.objective import elbo_terms, posterior_decoder, reconstruct, sample
from sigmavae.objective import log_importance_weights as objective_log_w

SHAPE = (1, 8, 8)


class UserVAE(nn.Module):
    """A user's VAE for images ``(C, H, W)``: MLP encoder to a diagonal Gaussian ``q(z|x)``, unit
    Gaussian prior, MLP decoder to the head's parameters. Only the protocol, no sigmavae base
    class: ``head``, ``latent_dim``, ``data_shape``, ``forward(x, noise) -> ModelOutput``,
    ``generate(noise)`` and (optional) ``posterior(x)``."""

    def __init__(self, head: LikelihoodHead, data_shape: tuple[int, int, int] = SHAPE,
                 latent_dim: int = 4, hidden: int = 32) -> None:
        super().__init__()
        c, h, w = data_shape
        self.head = head
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.Tanh(),
                                     nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(),
                                     nn.Linear(hidden, head.param_channels(c) * h * w),
                                     nn.Unflatten(1, (head.param_channels(c), h, w)))

    def posterior(self, x: torch.Tensor) -> Independent:
        mu, log_sigma = self.encoder(x).chunk(2, dim=1)
        return Independent(Normal(mu, log_sigma.exp()), 1)

    def generate(self, noise: torch.Tensor) -> torch.Tensor:
        return self.decoder(noise)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        q = self.posterior(x)
        z = q.rsample() if noise is None else q.base_dist.loc + q.base_dist.scale * noise.to(x)
        prior = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)
        kl = torch.distributions.kl_divergence(q, prior)
        return ModelOutput(params=self.generate(z), kl=kl,
                           log_prior_ratio=prior.log_prob(z) - q.log_prob(z), z=z, posterior=q)


class DecodingUserVAE(UserVAE):
    """With the protocol's optional ``decode_posterior(posterior, noise)``: ``forward`` after the
    encoder, so that the IWAE metric encodes each image once for its K samples."""

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        return self.decode_posterior(self.posterior(x), noise)

    def decode_posterior(self, q: Independent, noise: torch.Tensor | None = None) -> ModelOutput:
        loc, scale = q.base_dist.loc, q.base_dist.scale
        z = q.rsample() if noise is None else loc + scale * noise.to(loc)
        prior = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)
        kl = torch.distributions.kl_divergence(q, prior)
        return ModelOutput(params=self.generate(z), kl=kl,
                           log_prior_ratio=prior.log_prob(z) - q.log_prob(z), z=z, posterior=q)


def build_user_vae(image_shape: tuple[int, int, int], head: LikelihoodHead, *,
                   latent_dim: int = 4, hidden: int = 32) -> UserVAE:
    """A model-registry builder for :class:`UserVAE`."""
    return UserVAE(head, image_shape, latent_dim, hidden)


class MinimalUserVAE(UserVAE):
    """The protocol's minimum: no ``posterior`` method and no ``log p(z) - log q(z|x)``."""

    posterior = None  # type: ignore[assignment]

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        mu, log_sigma = self.encoder(x).chunk(2, dim=1)
        eps = torch.randn_like(mu) if noise is None else noise.to(mu)
        z = mu + log_sigma.exp() * eps
        kl = 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1.0 - 2.0 * log_sigma).sum(1)
        return ModelOutput(params=self.generate(z), kl=kl)


def _model(cls: type[UserVAE] = UserVAE, head: str = "learned_sigma") -> UserVAE:
    torch.manual_seed(0)
    return cls(likelihoods.create(head)).eval()


def _images(n: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, generator=g)


def test_a_plain_module_is_not_our_vae() -> None:
    model = _model()
    assert not isinstance(model, VAE) and type(model).__mro__[1] is nn.Module


def test_user_model_elbo_through_the_public_api() -> None:
    model, images = _model(), _images()
    report = evaluate_elbo(model, images, batch_size=5, samples=3, seed=1)
    per_image = elbo_per_image(model, images, batch_size=5, samples=3, seed=1)
    assert report.valid_bound and report.data_dims == 64
    assert report.neg_elbo == pytest.approx(float(per_image.neg_elbo.mean()), rel=1e-9)
    assert report.bits_per_dim == pytest.approx(report.neg_elbo / (64 * math.log(2)))
    # the single-sample terms: the head's -log p(x|z) at the model's z plus the analytic KL
    noise = torch.randn(12, model.latent_dim)
    with torch.no_grad():
        terms = elbo_terms(model, images, noise=noise)
        x = images.float() / 255
        q = model.posterior(x)
        z = q.base_dist.loc + q.base_dist.scale * noise
        nll = -model.head(model.decoder(z), target=x).log_prob(x)
    torch.testing.assert_close(terms.nll, nll)
    torch.testing.assert_close(terms.kl, torch.distributions.kl_divergence(
        q, Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)))


def test_user_model_iwae_through_the_public_api() -> None:
    model, images = _model(), _images()
    log_w = log_importance_weights(model, images, 64, seed=2, batch_size=50)
    assert log_w.shape == (12, 64) and log_w.dtype == torch.float64
    # K = 1 with image i's first draw is the single-sample ELBO integrand at that noise
    first = torch.stack([importance_noise(2, i, 64, model.latent_dim, torch.Generator())[0]
                         for i in range(12)])  # the first of each image's 64 draws
    with torch.no_grad():
        terms = elbo_terms(model, images, noise=first)
    z = terms.z.double()
    log_prior = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(1)
    expected = -terms.nll.double() + log_prior - terms.posterior.log_prob(terms.z).double()
    torch.testing.assert_close(log_w[:, 0], expected, rtol=1e-6, atol=1e-4)
    # Jensen, per image and exactly (the same samples): L_64 >= the mean of the weights
    assert torch.all(iwae_from_weights(log_w) >= log_w.mean(1) - 1e-9)
    bounds = iwae_per_image(model, images, 64, ks=[1, 64], seed=2, batch_size=50)
    torch.testing.assert_close(bounds[64], iwae_from_weights(log_w), rtol=0, atol=1e-6)
    out = iwae_metric.run(EvalContext(model, images, batch_size=50, seed=2,
                                      options={"iwae_samples": 64}))
    assert out["neg_iwae_nats_per_image"] == pytest.approx(-float(bounds[64].mean()), rel=1e-9)


def test_a_user_model_with_decode_posterior_is_encoded_once_per_image() -> None:
    """The optional ``decode_posterior`` is found by what the model has, not by its class: the
    IWAE metric encodes each image once and gets the weights of encoding every row."""
    plain, images = _model(), _images(4)
    model = DecodingUserVAE(plain.head).eval()
    model.load_state_dict(plain.state_dict())
    assert posterior_decoder(model) is model and posterior_decoder(plain) is None
    encoded: list[int] = []
    model.encoder.register_forward_hook(lambda module, args, out: encoded.append(len(out)))
    fast = log_importance_weights(model, images, 16, seed=3, batch_size=20)
    assert encoded == [4]
    generic = log_importance_weights(plain, images, 16, seed=3, batch_size=20)
    torch.testing.assert_close(fast, generic, rtol=1e-6, atol=1e-5)
    # a posterior for a model without decode_posterior: a clear error, not an AttributeError
    with torch.no_grad(), pytest.raises(TypeError, match="has no decode_posterior"):
        objective_log_w(plain, images, torch.zeros(4, plain.latent_dim),
                        posterior=plain.posterior(images.float() / 255))


def test_user_model_gets_every_metric_that_applies() -> None:
    model, images = _model(), _images()
    report = evaluate(model, images, ["elbo", "iwae", "mi", "active_units", "fid"],
                      options={"iwae_samples": 8, "fid_features": "pixels"}, batch_size=6)
    metrics = report["metrics"]
    for name in ("elbo", "iwae", "mi", "active_units", "fid"):
        assert metrics[name]["available"], (name, metrics[name])
    assert metrics["active_units"]["latent_dim"] == 4
    assert sample(model, 3).shape == (3, *SHAPE)
    assert reconstruct(model, images).shape == images.shape


def test_a_model_without_posterior_or_log_ratio_gets_the_elbo_and_says_why_not_the_rest() -> None:
    model, images = _model(MinimalUserVAE), _images()
    assert evaluate_elbo(model, images).valid_bound
    ctx = EvalContext(model, images, batch_size=6)
    for metric in (mi_metric, au_metric):
        with pytest.raises(MetricUnavailable, match="has no posterior"):
            metric.run(ctx)
    with pytest.raises(MetricUnavailable, match="log p\\(z\\) - log q\\(z\\|x\\)"):
        iwae_metric.run(EvalContext(model, images, options={"iwae_samples": 2}))
    report = evaluate(model, images, ["elbo", "iwae", "mi"], options={"iwae_samples": 2})
    assert report["metrics"]["elbo"]["available"]
    assert not report["metrics"]["iwae"]["available"] and not report["metrics"]["mi"]["available"]


# -- a head and a model registered from outside the package --------------------------------------
class ToyLaplaceHead(LikelihoodHead):
    """Laplace per pixel with a fixed scale, mean ``sigmoid(params)`` (a user's head)."""

    data_kind = "unit"

    def __init__(self, scale: float = 0.1) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale

    def params_per_channel(self) -> int:
        return 1

    def distribution(self, params: torch.Tensor,
                     target: torch.Tensor | None) -> ImageLikelihood:
        mean = torch.sigmoid(params)
        return ImageLikelihood(Laplace(mean, torch.full_like(mean, self.scale)), "unit")


@pytest.fixture
def registered() -> Iterator[tuple[str, str]]:
    """Register the toy head and the user's model builder; unregister them afterwards."""
    from sigmavae.likelihoods.registry import HEADS

    likelihoods.register("toy_laplace", "Laplace per pixel, fixed scale (a test's toy head)")(
        ToyLaplaceHead)
    register_model("user_mlp", "a user's MLP VAE (a test's toy model)")(build_user_vae)
    try:
        yield "toy_laplace", "user_mlp"
    finally:
        HEADS.unregister("toy_laplace")
        MODELS.unregister("user_mlp")


def test_registered_toy_head_and_model_through_the_public_api(registered) -> None:
    head_name, model_name = registered
    assert head_name in likelihoods.names()
    torch.manual_seed(0)
    head = likelihoods.create(head_name, scale=0.2)
    model = build_model(model_name, SHAPE, head, latent_dim=3).eval()
    assert isinstance(model, UserVAE) and model.latent_dim == 3
    images = _images()
    report = evaluate(model, images, ["elbo", "iwae", "mi", "active_units"],
                      options={"iwae_samples": 16}, batch_size=8)
    metrics = report["metrics"]
    assert all(metrics[name]["available"] for name in metrics), metrics
    neg_elbo = metrics["elbo"]["single_sample"]["neg_elbo_nats_per_image"]
    neg_iwae = metrics["iwae"]["neg_iwae_nats_per_image"]
    assert neg_iwae < neg_elbo + 1.0  # the 16-sample bound is (about) as tight or tighter
    with pytest.raises(ValueError, match="scale"):
        likelihoods.create(head_name, scale=-1.0)
