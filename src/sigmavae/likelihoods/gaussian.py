"""Gaussian decoders with a constant, learned or network-predicted sigma (paper, Sec. 3.1).

All model ``x`` as ``N(mu, sigma^2)`` per dimension, with
``-log p(x|z) = sum_d [ (x_d - mu_d)^2 / (2 sigma_d^2) + log sigma_d + log sqrt(2 pi) ]`` (nats),
for data in the range they declare (``data_range``: ``"unit"`` [0, 1] by default, ``"signed"``
[-1, 1], ``"real"``; see :mod:`._location`). Sigma is in the units of the data.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.distributions import Normal

from ._location import (
    ContinuousMeanActivation,
    DataRange,
    check_data_range,
    resolve_mean_activation,
)
from ._optimiser_check import OptimiserCheck, forward_watch, rearm, watch
from .base import ImageLikelihood, LikelihoodHead, effective_beta
from .bins import FAMILIES, discretized_log_prob
from .registry import register
from .softclip import DEFAULT_MIN_LOG_SIGMA, softclip


class BinnedNormal(Normal):
    """``torch.distributions.Normal`` that also gives the exact mass of each 8-bit intensity bin
    (for the discretised ELBO): :meth:`bin_log_mass` integrates the density over the bins of
    :mod:`.bins` with the closed form of :func:`~sigmavae.likelihoods.bins.discretized_log_prob`
    in float64 (``log_ndtr`` tails, Simpson's rule for narrow bins: no cancellation). Everything
    else, ``expand`` included, is torch's ``Normal``."""

    def bin_log_mass(self, intensities: torch.Tensor, offset: float = 0.0,
                     width: float = 1.0) -> torch.Tensor:
        """``log P(bin of intensity i)``, float64 nats, element-wise (broadcasting with the
        batch); ``intensities`` integers ``0..255`` of any dtype. The bins are those of
        :mod:`.bins` on the [0, 1] scale mapped by ``u -> offset + width * u`` to the data
        (``offset=-1, width=2`` for data in [-1, 1])."""
        loc, log_scale = self.loc.double(), self.scale.double().log()
        if offset != 0.0 or width != 1.0:
            loc, log_scale = (loc - offset) / width, log_scale - math.log(width)
        return discretized_log_prob(FAMILIES["gaussian"], intensities, loc, log_scale)


class GaussianMeanHead(LikelihoodHead):
    """Shared machinery for Gaussian heads whose decoder outputs only the mean (1 channel each).

    Args:
        mean_activation: ``"sigmoid"``, ``"tanh"`` or ``"identity"`` on the decoder output; by
            default the one of ``data_range``.
        data_range: the data's range: ``"unit"`` ([0, 1], default), ``"signed"`` ([-1, 1]) or
            ``"real"`` (any values; identity mean).
    """

    data_kind = "unit"

    def __init__(self, mean_activation: ContinuousMeanActivation | None = None,
                 validate_args: bool | None = None, data_range: DataRange = "unit") -> None:
        super().__init__(validate_args=validate_args)
        self.data_range = check_data_range(data_range)
        self.mean_activation = resolve_mean_activation(mean_activation, data_range)

    def params_per_channel(self) -> int:
        return 1

    def log_sigma(self, mean: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Log standard deviation, broadcastable to ``mean``."""
        raise NotImplementedError

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        mean = self.mean_location(params)
        sigma = self.log_sigma(mean, target).exp().to(mean.dtype)
        base = BinnedNormal(mean, sigma.expand_as(mean), validate_args=False)
        return ImageLikelihood(base, "unit", sigma=sigma, validate_args=self.validate_args,
                               data_range=self.data_range)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mean_activation={self.mean_activation!r}"


@register("gaussian", "Gaussian, unit variance (the 'Gaussian VAE'; MSE loss)")
class UnitGaussian(GaussianMeanHead):
    """``gaussian``: unit variance, the paper's "Gaussian VAE" (``effective_beta = 2``).

    With ``sigma = 1`` the reconstruction term is ``SSE / 2 + D log sqrt(2 pi)``; on [0, 1] data the
    KL term then dominates and samples are blurry (the paper's "Gaussian VAE" rows).
    """


    def log_sigma(self, mean: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        return torch.zeros((), device=mean.device, dtype=mean.dtype)

    @property
    def sigma(self) -> torch.Tensor:
        return torch.tensor(1.0)


@register("fixed_sigma", "Gaussian, constant sigma = sqrt(beta/2) (= beta-VAE)")
class FixedSigmaGaussian(GaussianMeanHead):
    """``fixed_sigma``: a constant sigma; identical to a beta-VAE with ``beta = 2 sigma^2``.

    The beta-VAE loss ``SSE + beta * KL`` is, up to a factor and a constant, the ELBO of this head
    with ``sigma = sqrt(beta / 2)`` (paper, Eq. 4); pass either ``sigma`` or ``beta``.
    The reported bound includes the ``D log sigma`` term, so it is a valid ELBO.

    Args:
        sigma: the standard deviation, > 0, in data units.
        beta: instead of ``sigma``: the beta of ``SSE + beta KL`` (``sigma = sqrt(beta / 2)``).
    """


    def __init__(
        self,
        sigma: float | None = None,
        beta: float | None = None,
        mean_activation: ContinuousMeanActivation | None = None,
        validate_args: bool | None = None,
        data_range: DataRange = "unit",
    ) -> None:
        super().__init__(mean_activation=mean_activation, validate_args=validate_args,
                         data_range=data_range)
        if (sigma is None) == (beta is None):
            raise ValueError("fixed_sigma: pass exactly one of sigma=... or beta=...")
        if sigma is None:
            if beta is None or not beta > 0:
                raise ValueError(f"fixed_sigma: beta must be > 0, got {beta}")
            sigma = sigma_from_beta(beta)
        if not sigma > 0 or not math.isfinite(sigma):
            raise ValueError(f"fixed_sigma: sigma must be a positive finite number, got {sigma}")
        self.fixed_log_sigma: torch.Tensor
        self.register_buffer("fixed_log_sigma", torch.tensor(math.log(sigma)))

    def log_sigma(self, mean: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        return self.fixed_log_sigma

    @property
    def sigma(self) -> torch.Tensor:
        return self.fixed_log_sigma.exp()


@register("learned_sigma", "Gaussian, one shared log-sigma learned by gradient descent")
class LearnedSigmaGaussian(GaussianMeanHead):
    """``learned_sigma``: one shared ``log sigma`` trained by gradient descent ("shared sigma-VAE").

    The paper finds no clipping is needed for a shared sigma; ``min_log_sigma`` can still be set.

    **The head has a parameter of its own**, ``raw_log_sigma`` (an ``nn.Parameter``): it must be
    in the optimiser, e.g. ``Adam(list(decoder.parameters()) + list(head.parameters()))``, or
    the head as a submodule of the model (as our models and trainer have it). Left out, sigma
    stays at ``init_sigma`` and the model is a beta-VAE with ``beta = 2 init_sigma^2``. The head
    watches for that (:mod:`._optimiser_check`): when its log-sigma has received non-zero
    gradients in ``head.optimiser_check.steps`` (50) training-mode backward passes and never
    changed, it warns once with
    :class:`~sigmavae.likelihoods.SigmaNotOptimisedWarning`. Eval mode, ``no_grad`` and a
    frozen head (``head.requires_grad_(False)``) are never reported; silence it on purpose with
    ``warnings.simplefilter("ignore", SigmaNotOptimisedWarning)``.

    Args:
        init_sigma: sigma before training, > 0, in data units (1: the unit-variance Gaussian).
        min_log_sigma: a soft lower bound on ``log sigma`` (``None``, default: none).
    """


    def __init__(
        self,
        init_sigma: float = 1.0,
        min_log_sigma: float | None = None,
        mean_activation: ContinuousMeanActivation | None = None,
        validate_args: bool | None = None,
        data_range: DataRange = "unit",
    ) -> None:
        super().__init__(mean_activation=mean_activation, validate_args=validate_args,
                         data_range=data_range)
        if not init_sigma > 0:
            raise ValueError(f"learned_sigma: init_sigma must be > 0, got {init_sigma}")
        self.raw_log_sigma = nn.Parameter(torch.tensor(math.log(init_sigma)))
        self.min_log_sigma = min_log_sigma
        #: Whether an optimiser steps ``raw_log_sigma`` (see the class docstring).
        self.optimiser_check = OptimiserCheck("raw_log_sigma", "log-sigma")
        watch(self, "optimiser_check")

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        rearm(self, "optimiser_check")  # pickled or deep-copied: the hook is not live

    def log_sigma(self, mean: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        forward_watch(self, "optimiser_check")
        return softclip(self.raw_log_sigma, self.min_log_sigma)

    @property
    def sigma(self) -> torch.Tensor:
        return softclip(self.raw_log_sigma.detach(), self.min_log_sigma).exp()


@register("per_pixel_sigma", "Gaussian, network predicts a soft-clipped sigma per pixel/channel")
class PerPixelSigmaGaussian(LikelihoodHead):
    """``per_pixel_sigma``: the network predicts a mean and a log sigma per pixel and channel.

    ``params`` holds ``2C`` channels: means, then raw log sigmas, soft-clipped to
    ``[min_log_sigma, max_log_sigma]`` (Chua et al.; the paper uses ``min_log_sigma = -6``).
    Pass ``min_log_sigma=None`` to disable clipping; the paper (Sec. 5.3) shows training then
    often diverges.

    Args:
        min_log_sigma: soft lower bound on each predicted ``log sigma`` (default -6, the
            paper's; ``None`` disables it).
        max_log_sigma: soft upper bound on each predicted ``log sigma`` (``None``: none).
        mean_activation: ``"sigmoid"``, ``"tanh"`` or ``"identity"`` on the predicted means; by
            default the one of ``data_range``.
        data_range: ``"unit"`` ([0, 1], default), ``"signed"`` ([-1, 1]) or ``"real"``.
    """

    data_kind = "unit"

    def __init__(
        self,
        min_log_sigma: float | None = DEFAULT_MIN_LOG_SIGMA,
        max_log_sigma: float | None = None,
        mean_activation: ContinuousMeanActivation | None = None,
        validate_args: bool | None = None,
        data_range: DataRange = "unit",
    ) -> None:
        super().__init__(validate_args=validate_args)
        self.data_range = check_data_range(data_range)
        self.mean_activation = resolve_mean_activation(mean_activation, data_range)
        self.min_log_sigma = min_log_sigma
        self.max_log_sigma = max_log_sigma
        softclip(torch.zeros(()), min_log_sigma, max_log_sigma)  # validates the bounds
        self._last_sigma: torch.Tensor | None = None

    def params_per_channel(self) -> int:
        return 2

    def divergence_hint(self) -> str | None:
        if self.min_log_sigma is not None:
            return None
        return (f"a per-pixel sigma without clipping collapsing to zero (paper, Sec. 5.3): keep "
                f"the default min_log_sigma={DEFAULT_MIN_LOG_SIGMA:g} or use optimal_sigma")

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        raw_mean, raw_log_sigma = self.split_params(params).unbind(1)
        mean = self.mean_location(raw_mean)
        sigma = softclip(raw_log_sigma, self.min_log_sigma, self.max_log_sigma).exp()
        dist = ImageLikelihood(BinnedNormal(mean, sigma, validate_args=False), "unit",
                               sigma=sigma, validate_args=self.validate_args,
                               data_range=self.data_range)
        # A scalar summary for logging: the shared sigma with the same effective beta.
        self._last_sigma = (effective_beta(sigma) / 2).sqrt()
        return dist

    @property
    def sigma(self) -> torch.Tensor | None:
        """Root of the harmonic mean of the variances of the last batch (a logging summary)."""
        return self._last_sigma


def sigma_from_beta(beta: float) -> float:
    """Paper, Sec. 3.1: beta-VAE loss ``SSE + beta KL`` has ``sigma = sqrt(beta/2)``."""
    return math.sqrt(beta / 2.0)


def beta_from_sigma(sigma: float) -> float:
    """Inverse of :func:`sigma_from_beta`: ``beta = 2 sigma^2`` (:func:`effective_beta`)."""
    return float(effective_beta(torch.tensor(sigma, dtype=torch.float64)))
