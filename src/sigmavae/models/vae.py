"""A VAE = encoder q(z|x) + unit Gaussian prior p(z) + decoder network + likelihood head p(x|z).

The model knows its head only through ``head.param_channels`` (to size the decoder) and the
distribution the head returns, so every head fits every model.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal

from ..likelihoods import ImageLikelihood, LikelihoodHead
from ..likelihoods.base import NUM_LEVELS


class ELBOTerms:
    """Per-example terms of the evidence lower bound, all in nats (sums over dimensions).

    (A plain class, not a dataclass or tuple, so engines that convert the outputs of a model leave
    the distributions inside alone.)

    Attributes:
        nll: ``-log p(x|z)`` for one posterior sample, ``(B,)`` (the distortion).
        kl: ``KL(q(z|x) || p(z))`` analytic, ``(B,)`` (the rate).
        loss: ``mean(nll + beta * kl)``, the scalar training loss (``beta = 1``: the negative ELBO).
        likelihood: the decoder distribution ``p(x|z)`` (batch ``(B,)``).
        posterior: ``q(z|x)`` (batch ``(B,)``, event ``(latent_dim,)``); ``None`` for models
            whose posterior is not one distribution over a flat latent (hierarchical).
        z: the posterior sample, ``(B, latent_dim)`` (hierarchical: its standard-normal noise).
    """

    def __init__(self, nll: torch.Tensor, kl: torch.Tensor, loss: torch.Tensor,
                 likelihood: ImageLikelihood, posterior: Independent | None,
                 z: torch.Tensor) -> None:
        self.nll = nll
        self.kl = kl
        self.loss = loss
        self.likelihood = likelihood
        self.posterior = posterior
        self.z = z

    @property
    def elbo(self) -> torch.Tensor:
        """``-(nll + kl)``, ``(B,)`` nats: a single-sample estimate of the lower bound."""
        return -(self.nll + self.kl)


def prepare_batch(
    images: torch.Tensor, head: LikelihoodHead, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a batch into (encoder input in [0, 1], the head's target).

    ``images`` is ``uint8`` ``(B, C, ...)`` (preferred) or float in ``[0, 1]``; discrete heads then
    get ``round(255 x)``. The encoder input is ``dtype`` (float32, or float64 for a model trained
    in double precision, which then also gets a float64 target for continuous heads).
    """
    if images.dtype == torch.uint8:
        x, target = images.to(dtype).div_(NUM_LEVELS - 1), head.prepare_target(images)
    elif not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    elif head.data_kind == "unit":
        x, target = images, images
    else:
        x, target = images, torch.round(images * (NUM_LEVELS - 1)).long()
    if dtype == torch.float64:
        x = x.to(dtype)
        target = target.to(dtype) if target.is_floating_point() else target
    return x, target


def upcast(values: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (autocast outputs) -> float32; float32 and float64 stay as they are."""
    return values.float() if values.dtype in (torch.float16, torch.bfloat16) else values


class VAE(nn.Module):
    """Gaussian-posterior VAE with a unit Gaussian prior and any likelihood head.

    Args:
        encoder: maps ``x`` ``(B, C, ...)`` in [0, 1] to ``2 * latent_dim`` features
            (posterior mean, then log-variance).
        decoder: maps ``z`` ``(B, L)`` to head parameters ``(B, head.param_channels(C), ...)``.
        head: the likelihood head.
        latent_dim: ``L``.
        data_shape: ``(C, ...)`` of one data point (for sampling and bits/dim).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        head: LikelihoodHead,
        latent_dim: int,
        data_shape: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.latent_dim = latent_dim
        self.data_shape = tuple(data_shape)

    @property
    def compute_dtype(self) -> torch.dtype:
        """float64 for a model converted to double precision, else float32 (also under
        autocast, whose parameters stay float32)."""
        dtype = next(self.parameters()).dtype
        return torch.float64 if dtype == torch.float64 else torch.float32

    @property
    def data_dims(self) -> int:
        """``D``, the number of data dimensions of one example (for bits/dim)."""
        return math.prod(self.data_shape)

    def posterior(self, x: torch.Tensor) -> Independent:
        """``q(z|x)``: diagonal Gaussian, batch ``(B,)``, event ``(latent_dim,)``."""
        h = self.encoder(x)
        mu, logvar = upcast(h).chunk(2, dim=1)
        return Independent(Normal(mu, (0.5 * logvar).exp(), validate_args=False), 1)

    def prior(self, device: torch.device | str | None = None) -> Independent:
        """``p(z) = N(0, I)`` with event ``(latent_dim,)``."""
        zeros = torch.zeros(self.latent_dim, device=device)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    def decode(self, z: torch.Tensor, target: torch.Tensor | None = None) -> ImageLikelihood:
        """``p(x|z)`` for latents ``(B, L)``; ``target`` is needed by data-dependent heads."""
        return self.head(self.decoder(z), target=target)

    def forward(
        self, images: torch.Tensor, beta: float = 1.0, noise: torch.Tensor | None = None
    ) -> ELBOTerms:
        """ELBO terms for a batch (``uint8`` or float in [0, 1], shape ``(B, *data_shape)``).

        ``beta`` weights the KL in ``loss`` only; ``nll``/``kl``/``elbo`` are always the true terms.
        ``noise`` ``(B, latent_dim)`` is the standard normal draw of the reparameterisation
        (drawn here if ``None``); the trainer passes it so N processes draw exactly what one
        process with the whole batch would.
        """
        x, target = prepare_batch(images, self.head, self.compute_dtype)
        q = self.posterior(x)
        if noise is None:
            z = q.rsample()
        else:
            base = q.base_dist
            z = base.loc + base.scale * noise.to(base.loc)
        likelihood = self.decode(z, target=target)
        nll = -likelihood.log_prob(target)
        kl = kl_to_standard_normal(q)
        loss = (nll + beta * kl).mean()
        return ELBOTerms(nll=nll, kl=kl, loss=loss, likelihood=likelihood, posterior=q, z=z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Means of ``p(x|z)`` for ``n`` prior samples, as images in [0, 1], ``(n, *data_shape)``.

        """
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        z = z.to(self.compute_dtype)
        return self.head.to_unit_interval(self._decoded_mean(z))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Means of ``p(x|z)`` at the posterior mean, images in [0, 1]."""
        x, _ = prepare_batch(images, self.head, self.compute_dtype)
        z = self.posterior(x).mean
        return self.head.to_unit_interval(self._decoded_mean(z))

    def _decoded_mean(self, z: torch.Tensor) -> torch.Tensor:
        return self.head.predict_mean(self.decoder(z))


def kl_to_standard_normal(q: Independent) -> torch.Tensor:
    """Analytic ``KL(N(mu, sigma^2) || N(0, I))`` summed over latent dims, ``(B,)`` nats."""
    mu, sigma = q.base_dist.loc, q.base_dist.scale
    return 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * sigma.log()).sum(-1)
