"""A VAE = encoder q(z|x) + unit Gaussian prior p(z) + decoder network + likelihood head p(x|z).

The model computes and :mod:`sigmavae.objective` scores: ``forward(x, noise)`` returns a
:class:`~sigmavae.objective.ModelOutput` (the decoder's head parameters, the analytic KL and
``log p(z) - log q(z|x)`` at the drawn ``z``), and the objective applies the head. The model knows
its head only through ``head.param_channels`` (to size the decoder), so every head fits every
model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.distributions import Independent, Normal

from ..likelihoods import LikelihoodHead
from ..likelihoods.base import upcast
from ..objective import (
    HALF_LOG_2PI,
    ELBOTerms,
    ModelOutput,
    prepare_batch,
    reconstruct,
    sample,
    standard_normal_log_prob,
)

__all__ = ["VAE", "ELBOTerms", "ModelOutput", "kl_to_standard_normal", "prepare_batch", "upcast"]


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that redefines :meth:`forward` (the hierarchical VAE) has no
        :meth:`decode_posterior` unless it redefines that too: this one decodes as
        :meth:`VAE.forward` does, not as the subclass's ``forward``. (``None`` is the model
        protocol's "not there", see :func:`~sigmavae.objective.posterior_decoder`.)"""
        super().__init_subclass__(**kwargs)
        if "forward" in vars(cls) and "decode_posterior" not in vars(cls):
            setattr(cls, "decode_posterior", None)  # noqa: B010 (a method may not be assigned)

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

    def generate(self, noise: torch.Tensor) -> torch.Tensor:
        """Head parameters ``(B, head.param_channels(C), ...)`` of the prior sample ``z = noise``
        (``p(z) = N(0, I)``), noise ``(B, latent_dim)``."""
        return self.decoder(noise)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        """Encode ``x`` (floats in [0, 1], ``(B, *data_shape)``), draw ``z ~ q(z|x)`` with
        ``noise`` ``(B, latent_dim)`` (drawn here, as ``q.rsample()`` would, if ``None``) and
        decode it: :meth:`decode_posterior` of :meth:`posterior`."""
        return self.decode_posterior(self.posterior(x), noise)

    def decode_posterior(self, q: Independent, noise: torch.Tensor | None = None) -> ModelOutput:
        """:meth:`forward` from an already computed ``q(z|x)`` of ``B`` rows (the IWAE metric
        encodes an image once for its K rows; the model protocol's optional
        ``decode_posterior``, :class:`~sigmavae.objective.PosteriorDecoder`).

        ``z`` and ``log p(z) - log q(z|x)`` are computed in the wider of the posterior's and the
        noise's dtype (float64 noise, as the IWAE metric draws, gives float64 latent terms); the
        decoder sees ``z`` in the posterior's dtype.
        """
        loc, scale = q.base_dist.loc, q.base_dist.scale
        if noise is None:
            eps = torch.empty_like(loc).normal_()  # what q.rsample() draws
        else:
            wide = torch.float64 if torch.float64 in (loc.dtype, noise.dtype) else loc.dtype
            eps = noise.to(device=loc.device, dtype=wide)
            loc, scale = loc.to(wide), scale.to(wide)
        z = loc + scale * eps
        log_q = (-0.5 * eps.pow(2) - scale.log() - HALF_LOG_2PI).sum(-1)
        log_prior = standard_normal_log_prob(z).sum(-1)
        z = z.to(q.base_dist.loc.dtype)
        return ModelOutput(params=self.decoder(z), kl=kl_to_standard_normal(q),
                           log_prior_ratio=log_prior - log_q, z=z, posterior=q)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """:func:`sigmavae.objective.sample`: ``n`` prior samples as images in [0, 1]."""
        return sample(self, n, generator)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """:func:`sigmavae.objective.reconstruct`: decoder means at the posterior mean."""
        return reconstruct(self, images)


def kl_to_standard_normal(q: Independent) -> torch.Tensor:
    """Analytic ``KL(N(mu, sigma^2) || N(0, I))`` summed over latent dims, ``(B,)`` nats."""
    mu, sigma = q.base_dist.loc, q.base_dist.scale
    return 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * sigma.log()).sum(-1)
