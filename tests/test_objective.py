"""The objective (sigmavae.objective): ELBO terms and importance weights from what a model
returns, the same code for the conv VAE, the hierarchical VAE and a sequence model; the model
registry's decorator."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

from sigmavae import likelihoods, objective
from sigmavae.metrics import elbo_per_image, evaluate_elbo, iwae_per_image
from sigmavae.metrics.iwae import importance_noise
from sigmavae.models import (
    MODELS,
    ModelOutput,
    build_conv_vae,
    build_hierarchical_vae,
    build_model,
    check_model_options,
    model_names,
    prepare_batch,
    register_model,
)
from sigmavae.objective import (
    elbo_terms,
    eval_mode,
    log_importance_weights,
    reconstruct,
    sample,
)
from sigmavae.options import OptionError


def _images(shape: tuple[int, ...], n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)


def _conv(head: str = "learned_sigma") -> nn.Module:
    torch.manual_seed(0)
    return build_conv_vae((1, 16, 16), likelihoods.create(head), latent_dim=3,
                          channels=(4, 4, 4)).eval()


def _hierarchical() -> nn.Module:
    torch.manual_seed(0)
    model = build_hierarchical_vae((1, 8, 8), likelihoods.create("learned_sigma"), latent_dim=2,
                                   width=4, layers=2, stages=2).eval()
    with torch.no_grad():  # move the posteriors away from the priors (zero-initialised)
        for layer in model.decoder.layers:
            layer.posterior.weight.normal_(0.0, 0.05)
            layer.posterior.bias.normal_(0.0, 0.3)
    return model


# -- the objective on our models -------------------------------------------------------------------
@pytest.mark.parametrize("make", [_conv, _hierarchical], ids=["conv", "hierarchical"])
def test_elbo_terms_are_the_head_applied_to_the_model_output(make) -> None:
    model = make()
    images = _images(model.data_shape)
    noise = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        terms = elbo_terms(model, images, beta=3.0, noise=noise)
        x, target = prepare_batch(images, model.head)
        out = model(x, noise=noise)
    assert isinstance(out, ModelOutput)
    expected_nll = -model.head(out.params, target=target).log_prob(target)
    torch.testing.assert_close(terms.nll, expected_nll, rtol=0, atol=0)
    torch.testing.assert_close(terms.kl, out.kl, rtol=0, atol=0)
    torch.testing.assert_close(terms.loss, (terms.nll + 3.0 * terms.kl).mean())
    torch.testing.assert_close(terms.elbo, -(terms.nll + terms.kl))
    assert terms.nll.shape == terms.kl.shape == out.log_prior_ratio.shape == (4,)


@pytest.mark.parametrize("make", [_conv, _hierarchical], ids=["conv", "hierarchical"])
def test_importance_weight_is_the_elbo_integrand_at_the_same_noise(make) -> None:
    """``log w = log p(x|z) + log p(z) - log q(z|x)``, and its mean over the posterior is the
    ELBO: ``E_q[log p(z) - log q(z|x)] = -KL`` (Monte Carlo, 4000 draws, 4 standard errors)."""
    model = make()
    image = _images(model.data_shape, n=1).expand(4000, *model.data_shape)
    noise = torch.randn(4000, model.latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        terms = elbo_terms(model, image, noise=noise)
        log_w = log_importance_weights(model, image, noise)
    ratio = log_w + terms.nll  # log p(z) - log q(z|x)
    diff = (ratio + terms.kl).double()
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(diff.numel()) + 1e-3


def test_conv_vae_log_prior_ratio_matches_torch_distributions() -> None:
    model = _conv()
    images = _images(model.data_shape)
    noise = torch.randn(4, model.latent_dim, dtype=torch.float64)
    with torch.no_grad():
        x, _ = prepare_batch(images, model.head)
        out = model(x, noise=noise)
        q = model.posterior(x)
    z = q.base_dist.loc.double() + q.base_dist.scale.double() * noise
    prior = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)
    q64 = Independent(Normal(q.base_dist.loc.double(), q.base_dist.scale.double()), 1)
    # float64 noise: the latent terms are computed in float64, the decoder sees float32 z
    assert out.log_prior_ratio.dtype == torch.float64 and out.z.dtype == torch.float32
    torch.testing.assert_close(out.log_prior_ratio, prior.log_prob(z) - q64.log_prob(z))
    torch.testing.assert_close(out.z, z.float(), rtol=0, atol=0)


def test_sample_and_reconstruct_use_generate_and_the_posterior_mean() -> None:
    model = _conv()
    images = _images(model.data_shape)
    g = torch.Generator().manual_seed(3)
    samples = sample(model, 5, generator=g)
    noise = torch.randn(5, model.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        means = model.head.predict_mean(model.generate(noise))
        x, _ = prepare_batch(images, model.head)
        at_mean = model.head.predict_mean(model.decoder(model.posterior(x).mean))
    torch.testing.assert_close(samples, model.head.to_unit_interval(means), rtol=0, atol=0)
    torch.testing.assert_close(reconstruct(model, images), model.head.to_unit_interval(at_mean),
                               rtol=0, atol=0)
    assert samples.shape == (5, *model.data_shape)


def test_eval_mode_restores_the_mode_and_units() -> None:
    model = _conv().train()
    with eval_mode(model):
        assert not model.training
    assert model.training
    assert objective.bits_per_dim(256 * math.log(2.0), 256) == pytest.approx(1.0)
    assert objective.data_dims(model) == 256
    assert objective.compute_dtype(model) == torch.float32


# -- sequences -----------------------------------------------------------------------------------
class ToySequenceVAE(nn.Module):
    """Sequences of ``T`` frames ``(C, H, W)``: one Gaussian latent of size ``per_frame`` per frame
    (flat noise ``(B, T * per_frame)``), linear per-frame encoder and decoder."""

    def __init__(self, head: likelihoods.LikelihoodHead, data_shape=(3, 1, 4, 4),
                 per_frame: int = 2) -> None:
        super().__init__()
        t, c, h, w = data_shape
        self.head, self.data_shape, self.latent_dim = head, tuple(data_shape), t * per_frame
        self.frames, self.per_frame = t, per_frame
        self.encoder = nn.Linear(c * h * w, 2 * per_frame)
        self.decoder = nn.Linear(per_frame, head.param_channels(c) * h * w)
        self.param_shape = (head.param_channels(c), h, w)

    def posterior(self, x: torch.Tensor) -> Independent:
        mu, log_sigma = self.encoder(x.flatten(2)).chunk(2, dim=-1)  # (B, T, per_frame)
        return Independent(Normal(mu.flatten(1), log_sigma.flatten(1).exp()), 1)

    def generate(self, noise: torch.Tensor) -> torch.Tensor:
        z = noise.view(noise.shape[0], self.frames, self.per_frame)
        return self.decoder(z).view(noise.shape[0], self.frames, *self.param_shape)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        q = self.posterior(x)
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        eps = torch.randn_like(mu) if noise is None else noise.to(mu)
        z = mu + sigma * eps
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * sigma.log()).sum(1)
        prior = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)
        return ModelOutput(self.generate(z), kl, prior.log_prob(z) - q.log_prob(z), z, q)


@pytest.mark.parametrize("head", ["learned_sigma", "categorical"])
def test_sequence_model_gets_the_head_per_frame_summed_over_frames(head: str) -> None:
    torch.manual_seed(0)
    model = ToySequenceVAE(likelihoods.create(head)).eval()
    images = _images(model.data_shape, n=5)  # (B, T, C, H, W)
    noise = torch.randn(5, model.latent_dim)
    with torch.no_grad():
        terms = elbo_terms(model, images, noise=noise)
        x, target = prepare_batch(images, model.head)
        params = model(x, noise=noise).params
        per_frame = torch.stack([
            -model.head(params[:, t], target=target[:, t]).log_prob(target[:, t])
            for t in range(3)], dim=1)
    assert objective.is_sequence(model) and terms.nll.shape == terms.kl.shape == (5,)
    torch.testing.assert_close(terms.nll, per_frame.sum(1))
    assert terms.likelihood.batch_shape == (15,)  # one distribution per frame
    assert objective.per_frame(model, images).shape == (15, 1, 4, 4)
    # the same IWAE and ELBO code as for images: K = 1 is the ELBO integrand at the same noise
    bounds = iwae_per_image(model, images, samples=8, ks=[1, 8], seed=0, batch_size=16)
    first = torch.stack([importance_noise(0, i, 8, model.latent_dim, torch.Generator())[0]
                         for i in range(5)])  # the first of each image's 8 draws
    with torch.no_grad():
        log_w = log_importance_weights(model, images, first)
    torch.testing.assert_close(bounds[1], log_w.double(), rtol=1e-6, atol=1e-4)
    assert (bounds[8] >= bounds[1] - math.log(8) - 1e-6).all()
    report = evaluate_elbo(model, images, batch_size=2)
    per_image = elbo_per_image(model, images, batch_size=2)
    assert report.data_dims == 48
    assert report.kl == pytest.approx(float(per_image.kl.mean()))
    assert sample(model, 2).shape == (2, 3, 1, 4, 4)
    assert reconstruct(model, images).shape == (5, 3, 1, 4, 4)


class ToyConditionalVAE(ToySequenceVAE):
    """Given the first ``context`` of ``T`` frames, predicts the rest: params and latents only for
    the ``T - context`` predicted frames; the context enters the decoder through its mean."""

    def __init__(self, head: likelihoods.LikelihoodHead, data_shape=(4, 1, 4, 4),
                 context: int = 2, per_frame: int = 2) -> None:
        super().__init__(head, data_shape, per_frame)
        self.context_frames = context
        self.frames = data_shape[0] - context
        self.latent_dim = self.frames * per_frame
        self.mix = nn.Linear(data_shape[1] * data_shape[2] * data_shape[3], per_frame)

    def generate(self, noise: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        shift = self.mix(context.flatten(2).mean(1)).unsqueeze(1)  # (B, 1, per_frame)
        z = noise.view(noise.shape[0], self.frames, self.per_frame) + shift
        return self.decoder(z).view(noise.shape[0], self.frames, *self.param_shape)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        q = self.posterior(x[:, self.context_frames:])
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        eps = torch.randn_like(mu) if noise is None else noise.to(mu)
        z = mu + sigma * eps
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * sigma.log()).sum(1)
        prior = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)
        params = self.generate(z, x[:, :self.context_frames])
        return ModelOutput(params, kl, prior.log_prob(z) - q.log_prob(z), z, q)


@pytest.mark.parametrize("head", ["learned_sigma", "categorical"])
def test_conditional_sequence_model_is_scored_on_its_predicted_frames(head: str) -> None:
    torch.manual_seed(0)
    model = ToyConditionalVAE(likelihoods.create(head)).eval()
    images = _images(model.data_shape, n=3)  # (B, 4, 1, 4, 4): 2 context + 2 predicted
    noise = torch.randn(3, model.latent_dim)
    with torch.no_grad():
        terms = elbo_terms(model, images, noise=noise)
        x, target = prepare_batch(images, model.head)
        params = model(x, noise=noise).params
        by_hand = sum(-model.head(params[:, t], target=target[:, 2 + t]).log_prob(target[:, 2 + t])
                      for t in range(2))
    assert params.shape[1] == 2 and objective.context_frames(model) == 2
    torch.testing.assert_close(terms.nll, by_hand)
    assert terms.likelihood.batch_shape == (6,)  # B x predicted frames
    assert objective.data_dims(model) == 2 * 16  # bits/dim over the predicted frames only
    assert evaluate_elbo(model, images, batch_size=2).data_dims == 32
    # samples continue the given context; without one there is no sample
    g = torch.Generator().manual_seed(0)
    samples = sample(model, 3, generator=g, context=images)
    assert samples.shape == (3, 2, 1, 4, 4) and 0 <= samples.min() <= samples.max() <= 1
    other = images.clone()
    other[:, :2] = 255 - other[:, :2]
    moved = sample(model, 3, generator=torch.Generator().manual_seed(0), context=other)
    assert not torch.allclose(samples, moved)  # the context is what it is conditioned on
    with pytest.raises(ValueError, match="pass context="):
        sample(model, 3)
    with pytest.raises(ValueError, match="context must be"):
        sample(model, 3, context=images[:2])
    with pytest.raises(ValueError, match="not conditional"):
        sample(ToySequenceVAE(likelihoods.create(head)), 2, context=images)
    assert reconstruct(model, images).shape == (3, 2, 1, 4, 4)


def test_a_sequence_model_is_matched_to_longer_test_sequences() -> None:
    """SVG's BAIR protocol trains on 2 + 10 frames and scores 2 + 28: the model then describes
    the longer sequences, with as many latents per predicted frame as in training."""
    from sigmavae.models.svg import build_svg

    torch.manual_seed(0)
    model = build_svg((4, 1, 64, 64), likelihoods.create("learned_sigma"), backbone="dcgan",
                      context_frames=2, g_dim=8, z_dim=3, rnn_size=8, width=4).eval()
    assert model.latent_dim == 3 * 2
    objective.match_sequence_length(model, 4)  # the training length: nothing changes
    assert model.data_shape == (4, 1, 64, 64) and model.latent_dim == 6
    objective.match_sequence_length(model, 6)
    assert model.data_shape == (6, 1, 64, 64) and model.latent_dim == 3 * 4
    assert objective.data_dims(model) == 4 * 64 * 64  # bits/dim over the 4 predicted frames
    images = _images(model.data_shape, n=2)
    with torch.no_grad():
        terms = elbo_terms(model, images)
    assert terms.nll.shape == terms.kl.shape == (2,) and torch.isfinite(terms.nll).all()
    assert sample(model, 2, context=images).shape == (2, 4, 1, 64, 64)
    with pytest.raises(ValueError, match="leave none to predict"):
        objective.match_sequence_length(model, 2)
    toy = ToyConditionalVAE(likelihoods.create("learned_sigma"))
    toy.latent_dim = 5  # not a number of latents per predicted frame (2 frames)
    with pytest.raises(ValueError, match="not a number of latents per predicted frame"):
        objective.match_sequence_length(toy, 6)


def test_original_objective_is_svg_mse_and_beta_times_the_fixed_sigma_elbo() -> None:
    torch.manual_seed(0)
    beta, pixels = 1e-4, 16  # C H W of one frame
    sigma = math.sqrt(beta * pixels / 2)
    model = ToyConditionalVAE(likelihoods.create("fixed_sigma", sigma=sigma)).eval()
    images = _images(model.data_shape, n=3)
    noise = torch.randn(3, model.latent_dim)
    with torch.no_grad():
        terms = objective.original_objective_terms(model, images, beta=beta, noise=noise)
        x = images.double() / 255
        out = model(x.float(), noise=noise)
        mean = torch.sigmoid(out.params).double()  # fixed_sigma's mean activation
        # SVG's code: per step MSE averaged over batch and pixels + beta * KL(sum z, mean batch)
        by_hand = sum(((mean[:, t] - x[:, 2 + t]) ** 2).mean() for t in range(2))
        by_hand = by_hand + beta * out.kl.double().mean()
        elbo = elbo_terms(model, images, noise=noise)
    assert float(terms.loss) == pytest.approx(float(by_hand), rel=1e-5)
    torch.testing.assert_close(terms.nll, elbo.nll)  # the reported terms are the head's
    # loss / beta = -ELBO - D log(sigma sqrt(2 pi)), D the predicted dimensions
    constant = 2 * pixels * (math.log(sigma) + objective.HALF_LOG_2PI)
    assert float(terms.loss) / beta == pytest.approx(float((elbo.nll + elbo.kl).mean()) - constant,
                                                     rel=1e-4)


# -- the model registry --------------------------------------------------------------------------
def test_model_registry_decorator_and_errors() -> None:
    assert {"conv", "hierarchical"} <= set(model_names())
    with pytest.raises(OptionError, match="unknown model 'nosuch'; choose one of: conv"):
        check_model_options("nosuch", {})
    with pytest.raises(OptionError, match="model 'conv': unknown option width"):
        check_model_options("conv", {"width": 3})

    @register_model("toy_sequence", "a toy sequence VAE (tests)")
    def build_toy_sequence(image_shape: tuple[int, ...], head: likelihoods.LikelihoodHead, *,
                           per_frame: int = 2) -> ToySequenceVAE:
        if per_frame < 1:
            raise ValueError("per_frame must be >= 1")
        return ToySequenceVAE(head, image_shape, per_frame)

    try:
        assert "toy_sequence" in model_names()
        assert MODELS.summary("toy_sequence") == "a toy sequence VAE (tests)"
        model = build_model("toy_sequence", (2, 1, 4, 4), likelihoods.create("gaussian"),
                            per_frame=3)
        assert model.latent_dim == 6
        with pytest.raises(OptionError, match="option per_frame must be an integer"):
            build_model("toy_sequence", (2, 1, 4, 4), likelihoods.create("gaussian"),
                        per_frame="3")
        with pytest.raises(OptionError, match="model 'toy_sequence': per_frame must be >= 1"):
            build_model("toy_sequence", (2, 1, 4, 4), likelihoods.create("gaussian"),
                        per_frame=0)
    finally:
        MODELS.unregister("toy_sequence")
    assert "toy_sequence" not in model_names()
