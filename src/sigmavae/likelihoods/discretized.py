"""Discretised continuous decoders over 8-bit intensities (paper, Table 4 and App. D).

A continuous distribution on the ``[0, 1]`` scale is cut into 256 bins: intensity ``i`` gets the
mass of ``[(i - 1/2) / 255, (i + 1/2) / 255]``, except that the first and the last bins extend to
``-inf`` and ``+inf`` (PixelCNN++, Salimans et al., 2017), so the 256 probabilities sum to one.
``log_prob`` is in nats per data dimension; data are integer intensities ``0..255``.

Heads:

* ``logistic_mixture``: a mixture of ``K`` discretised logistics per pixel *and* channel, every
  channel independent given ``z`` (no autoregressive channel coupling and no mean-adjusting
  coefficients: App. D);
* ``discretized_gaussian`` / ``discretized_logistic``: one discretised Gaussian / logistic per
  dimension with the location from the decoder and one shared scalar scale (learned, "optimal"
  or fixed), the discrete counterparts of the shared sigma-VAE (Table 4).

All heads use one code path, :class:`DiscretizedMixture` (a single distribution is a mixture of
one), parameterised by a standardised :class:`~sigmavae.likelihoods.bins.Family` that knows its
log-CDF and log-survival function and how to compute the log-mass of a bin without cancellation
(the bins and the families are defined in :mod:`.bins`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from . import bins
from ._location import MeanActivation, check_mean_activation
from ._optimiser_check import OptimiserCheck, forward_watch, rearm, watch
from .base import ImageLikelihood, LikelihoodHead, LikelihoodInputError, ShapeLike
from .bins import (
    BIN_WIDTH,
    FAMILIES,
    MIN_LOG_SCALE,
    NUM_LEVELS,
    Family,
    discretized_log_prob,
)
from .optimal import (
    PUBLIC_CODE_MIN_LOG_SIGMA,
    QUANTIZATION_SIGMA,
    OptimalSigmaGaussian,
    TrainSigma,
)
from .registry import register
from .softclip import DEFAULT_MIN_LOG_SIGMA, softclip

__all__ = ["FAMILIES", "DiscretizedGaussianHead", "DiscretizedHead", "DiscretizedLogisticHead",
           "DiscretizedMixture", "Family", "LogisticMixtureHead", "discretized_log_prob"]

_NO_SHAPE = torch.Size()
# Thresholds per chunk when summing survival functions over the 255 inner bin edges (memory).
_LEVEL_CHUNK = 32


class DiscretizedMixture(Distribution):
    """A mixture of ``K`` discretised ``family`` distributions over intensities ``0..255``.

    Element-wise: ``loc`` and ``log_scale`` have shape ``batch_shape + (K,)`` (``loc`` on the
    [0, 1] scale), ``mixture_logits`` too, or ``None`` for ``K = 1``. ``log_prob`` is in nats per
    element, ``mean``/``variance`` in intensity units (exact sums over the 256 levels), ``cdf``
    exact, ``sample`` returns ``int64`` intensities; ``expand`` views the parameters. ``mode``,
    ``entropy`` (nats) and ``icdf`` are exact too, by enumerating the 256 levels (a chunk at a
    time, within :data:`~.bins.LEVEL_BUDGET` values).
    """

    support = constraints.integer_interval(0, NUM_LEVELS - 1)
    has_enumerate_support = False

    def __init__(
        self,
        family: Family,
        loc: torch.Tensor,
        log_scale: torch.Tensor,
        mixture_logits: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if mixture_logits is not None:
            loc, log_scale, mixture_logits = torch.broadcast_tensors(
                loc, log_scale, mixture_logits
            )
        else:
            loc, log_scale = torch.broadcast_tensors(loc, log_scale)
            if loc.shape[-1] != 1:
                raise ValueError("DiscretizedMixture: mixture_logits is required for K > 1")
        self.family = family
        self.loc = loc
        self.log_scale = log_scale.clamp_min(MIN_LOG_SCALE)
        self.mixture_logits = mixture_logits
        super().__init__(batch_shape=loc.shape[:-1], validate_args=validate_args)

    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:
        """``loc``, ``log_scale`` (and ``mixture_logits`` when given): real, ``batch + (K,)``."""
        real = constraints.independent(constraints.real, 1)
        names = ("loc", "log_scale") if self.mixture_logits is None else (
            "loc", "log_scale", "mixture_logits")
        return dict.fromkeys(names, real)

    def expand(self, batch_shape: ShapeLike,
               _instance: DiscretizedMixture | None = None) -> DiscretizedMixture:
        new = self._get_checked_instance(DiscretizedMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + self.loc.shape[-1:]
        new.family = self.family
        new.loc = self.loc.expand(shape)
        new.log_scale = self.log_scale.expand(shape)
        new.mixture_logits = (None if self.mixture_logits is None
                              else self.mixture_logits.expand(shape))
        super(DiscretizedMixture, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def scale(self) -> torch.Tensor:
        """Scales on the [0, 1] scale, ``batch_shape + (K,)``."""
        return self.log_scale.exp()

    def _log_weights(self) -> torch.Tensor | None:
        return None if self.mixture_logits is None else F.log_softmax(self.mixture_logits, -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        comp = discretized_log_prob(self.family, value.unsqueeze(-1), self.loc, self.log_scale)
        log_w = self._log_weights()
        if log_w is None:
            return comp.squeeze(-1)
        return torch.logsumexp(log_w + comp, dim=-1)

    def _upper_edge_cdf(self, level: torch.Tensor) -> torch.Tensor:
        """``F((level + 1/2) / 255)`` mixed over components; ``level`` broadcasts with
        ``batch_shape + (n,)``, giving ``batch_shape + (n,)``."""
        z = ((level.unsqueeze(-1) + 0.5) * BIN_WIDTH - self.loc.unsqueeze(-2)) * torch.exp(
            -self.log_scale.unsqueeze(-2)
        )
        cdf = self.family.cdf(z)
        if self.mixture_logits is None:
            return cdf.squeeze(-1)
        weights = torch.softmax(self.mixture_logits, -1).unsqueeze(-2)
        return (weights * cdf).sum(-1)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)`` (exact: the continuous CDF at the bin's upper edge; 1 at 255)."""
        if self._validate_args:
            self._validate_sample(value)
        value = value.to(self.loc.dtype)
        below = self._upper_edge_cdf(value.unsqueeze(-1)).squeeze(-1)
        return torch.where(value >= NUM_LEVELS - 1, torch.ones_like(below), below)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """The quantile of probability ``value`` in ``[0, 1]``: the smallest intensity ``i`` with
        ``P(X <= i) >= value`` (``int64``; exact, counting the levels whose CDF is below it)."""
        return bins.quantile_by_counting(self._upper_edge_cdf, value, self.loc,
                                         chunk=self._levels_per_chunk())

    def _levels_per_chunk(self) -> int:
        """Levels enumerated at once (memory: :func:`~.bins.levels_per_chunk`)."""
        return bins.levels_per_chunk(self.loc.numel() // self.loc.shape[-1], self.loc.shape[-1])

    def _log_prob_at_levels(self, levels: torch.Tensor) -> torch.Tensor:
        """``log P(X = i)`` for the intensities ``levels`` ``(n,)``: ``batch_shape + (n,)``."""
        comp = discretized_log_prob(self.family, levels.unsqueeze(-1), self.loc.unsqueeze(-2),
                                    self.log_scale.unsqueeze(-2))  # batch + (n, K)
        log_w = self._log_weights()
        if log_w is None:
            return comp.squeeze(-1)
        return torch.logsumexp(log_w.unsqueeze(-2) + comp, dim=-1)

    @property
    def mode(self) -> torch.Tensor:
        """The most probable intensity (``int64``; the lowest one on a tie), found exactly by
        scoring all 256 levels (a discretised mixture's mode need not be at a location)."""
        best: torch.Tensor | None = None
        arg: torch.Tensor | None = None
        first = 0  # the intensity of the chunk's first level
        for levels in bins.level_chunks(self.loc, self._levels_per_chunk()):
            value, index = self._log_prob_at_levels(levels).max(-1)
            index = index + first
            first += levels.numel()
            if best is None or arg is None:
                best, arg = value, index
                continue
            better = value > best  # strictly: the lower level keeps a tie, as argmax does
            best, arg = torch.where(better, value, best), torch.where(better, index, arg)
        assert arg is not None
        return arg

    def entropy(self) -> torch.Tensor:
        """``-sum_i P(i) log P(i)`` over the 256 intensities, nats per element: exact (a finite
        sum; a discretised distribution has no closed form in its parameters, so the levels are
        enumerated, a chunk at a time)."""
        total = torch.zeros(self.batch_shape, dtype=self.loc.dtype, device=self.loc.device)
        for levels in bins.level_chunks(self.loc, self._levels_per_chunk()):
            log_p = self._log_prob_at_levels(levels)
            p = log_p.exp()
            total = total - torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(-1)
        return total

    def _moments(self, second_moment: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``E[X]`` and ``E[X^2]`` exactly, as ``sum_i P(X > i)`` and ``sum_i (2i+1) P(X > i)``
        over ``i = 0..254`` (``E[X^2]`` is ``None`` unless ``second_moment``: the mean alone,
        for sample grids, skips its product and sum); one component and a chunk of levels at a
        time (memory: the batch times ``_LEVEL_CHUNK``)."""
        weights = None if self.mixture_logits is None else torch.softmax(self.mixture_logits, -1)
        first = torch.zeros(self.batch_shape, dtype=self.loc.dtype, device=self.loc.device)
        second = torch.zeros_like(first) if second_moment else None
        for k in range(self.loc.shape[-1]):
            loc = self.loc[..., k : k + 1]
            inv_scale = torch.exp(-self.log_scale[..., k : k + 1])
            first_k = torch.zeros_like(first)
            second_k = torch.zeros_like(first) if second_moment else None
            for start in range(0, NUM_LEVELS - 1, _LEVEL_CHUNK):
                levels = torch.arange(
                    start, min(start + _LEVEL_CHUNK, NUM_LEVELS - 1),
                    dtype=self.loc.dtype, device=self.loc.device,
                )
                # P(X > i) = S((i + 1/2) / 255) = F(-z) by symmetry (accurate in the tail).
                sf = self.family.cdf((loc - (levels + 0.5) * BIN_WIDTH) * inv_scale)
                first_k = first_k + sf.sum(-1)
                if second_k is not None:
                    second_k = second_k + (sf * (2 * levels + 1)).sum(-1)
            weight = 1.0 if weights is None else weights[..., k]
            first = first + weight * first_k
            if second is not None and second_k is not None:
                second = second + weight * second_k
        return first, second

    @property
    def mean(self) -> torch.Tensor:
        """Expected intensity (float, 0..255), exact."""
        return self._moments(second_moment=False)[0]

    @property
    def variance(self) -> torch.Tensor:
        first, second = self._moments()
        assert second is not None
        return (second - first * first).clamp_min(0.0)

    def sample(self, sample_shape: ShapeLike = _NO_SHAPE) -> torch.Tensor:
        """Intensities ``int64`` of shape ``sample_shape + batch_shape``: a component, then a
        continuous draw, rounded to the nearest intensity and clamped to ``0..255``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            loc, log_scale = self.loc, self.log_scale
            if self.mixture_logits is None:
                loc, log_scale = loc[..., 0], log_scale[..., 0]
            else:
                comp = torch.distributions.Categorical(logits=self.mixture_logits).sample(
                    torch.Size(sample_shape)
                )
                index = comp.unsqueeze(-1)
                loc = loc.expand(shape + loc.shape[-1:]).gather(-1, index).squeeze(-1)
                log_scale = log_scale.expand(shape + log_scale.shape[-1:]).gather(-1, index)
                log_scale = log_scale.squeeze(-1)
            scale = log_scale.clamp_max(-MIN_LOG_SCALE).exp()
            y = loc + scale * self.family.sample(shape, loc)
            y = y.clamp(-1.0, 2.0) * (NUM_LEVELS - 1)  # beyond the edge bins; avoids overflow
            return y.round().clamp(0, NUM_LEVELS - 1).long().expand(shape)


ScaleOption = Literal["learned", "optimal"] | float


class DiscretizedHead(LikelihoodHead):
    """One discretised ``family`` per dimension, location from the decoder, one shared scale.

    ``params``: ``(B, C, *spatial)`` raw locations (``mean_activation`` applied, ``sigmoid`` by
    default, on the [0, 1] scale). ``scale`` chooses the shared scalar scale ``s``:

    * ``"learned"`` (default): ``log s = softclip(raw, min_log_scale, max_log_scale)`` (the
      default ``min_log_scale="auto"`` is the paper's -6 here) with
      ``raw`` an ``nn.Parameter`` initialised at ``log(init_scale)``; ``init_scale = 0.1`` is
      the order of early reconstruction errors on [0, 1] data (``s = 1`` would make the initial
      likelihood almost flat across the 256 bins). The parameter belongs to the head, which must
      be in the optimiser; as for ``learned_sigma`` the head warns
      (:class:`~sigmavae.likelihoods.SigmaNotOptimisedWarning`) when it is not;
    * ``"optimal"``: the analytic continuous MLE of the shared-sigma Gaussian, ``sigma^2 = MSE``
      between the locations and ``x / 255`` (batch MSE in training, a running average in eval,
      all-reduced under torch.distributed: :class:`OptimalSigmaGaussian`, ``decay`` and
      ``train_sigma`` are passed on); for the logistic, the moment-matched
      ``s = sqrt(3 MSE) / pi``. This is the optimum of the *continuous* likelihood, an
      approximation for the discretised one (close when ``s`` is well above a bin width). It is
      exact by default (``min_log_scale="auto"`` means no soft clip here; only the hard floor
      ``min_sigma`` of :class:`OptimalSigmaGaussian` on the noise's standard deviation); a number,
      or ``"public_code"`` (-6), soft-clips ``log s`` as the public sigma-VAE code does;
    * a float: a fixed scale (not clipped).

    ``sigma`` (on the head and on the returned distribution) is the **standard deviation** of the
    continuous noise, ``s * family.std``: ``s`` for the Gaussian, ``s * pi / sqrt(3)`` for the
    logistic. Hence ``effective_beta = 2 sigma^2`` is the beta of the Gaussian beta-VAE whose noise
    has the same variance, comparable across heads. ``scale`` is ``s`` itself.

    Args:
        scale: ``"learned"`` (default), ``"optimal"`` (the MSE's analytic scale) or a
            number: a fixed scale ``s`` > 0.
        init_scale: ``"learned"``: the scale ``s`` before training (default 0.1).
        min_log_scale: soft lower bound on ``log s``: ``"auto"`` (default: -6 when learned,
            none when optimal), ``"public_code"`` (-6), a number, or ``None`` (none).
        max_log_scale: soft upper bound on ``log s`` (``None``, default: none).
        decay: ``"optimal"``: running-average decay per training batch, in ``[0, 1)``.
        train_sigma: ``"optimal"``: ``"batch"`` (paper) or ``"running"`` (App. C bias fix).
        min_sigma: ``"optimal"``: hard floor on the noise's standard deviation (default: 8-bit
            rounding noise, 1 / (255 sqrt(12))).
        mean_activation: ``"sigmoid"`` (default) or ``"identity"`` on the locations.
    """

    data_kind = "intensity"
    family: Family = FAMILIES["gaussian"]

    def __init__(
        self,
        scale: ScaleOption = "learned",
        init_scale: float = 0.1,
        min_log_scale: float | Literal["auto", "public_code"] | None = "auto",
        max_log_scale: float | None = None,
        decay: float = 0.9,
        train_sigma: TrainSigma = "batch",
        min_sigma: float = QUANTIZATION_SIGMA,
        mean_activation: MeanActivation = "sigmoid",
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(validate_args=validate_args)
        self.mean_activation = check_mean_activation(mean_activation)
        if min_log_scale == "auto":  # the paper's clip for a learned scale; exact otherwise
            min_log_scale = DEFAULT_MIN_LOG_SIGMA if scale == "learned" else None
        elif min_log_scale == "public_code":
            min_log_scale = PUBLIC_CODE_MIN_LOG_SIGMA
        if isinstance(min_log_scale, str):
            raise ValueError(f"{self.name}: min_log_scale must be a number, 'auto', "
                             f"'public_code' or None, got {min_log_scale!r}")
        softclip(torch.zeros(()), min_log_scale, max_log_scale)  # validates the bounds
        self.min_log_scale = min_log_scale
        self.max_log_scale = max_log_scale
        if isinstance(scale, str):
            if scale not in ("learned", "optimal"):
                raise ValueError(
                    f"{self.name}: scale must be 'learned', 'optimal' or a positive float, "
                    f"got {scale!r}"
                )
            self.scale_mode: str = scale
        else:
            if isinstance(scale, bool) or not isinstance(scale, int | float):
                raise ValueError(f"{self.name}: scale must be 'learned', 'optimal' or a float")
            if not (scale > 0 and math.isfinite(scale)):
                raise ValueError(f"{self.name}: a fixed scale must be positive, got {scale}")
            self.scale_mode = "fixed"
            #: A Python float (not a buffer) so float64 evaluation uses the exact value.
            self.fixed_log_scale = math.log(scale)
        if self.scale_mode == "learned":
            if not (init_scale > 0 and math.isfinite(init_scale)):
                raise ValueError(f"{self.name}: init_scale must be positive, got {init_scale}")
            raw = _inverse_softclip(math.log(init_scale), min_log_scale, max_log_scale)
            self.raw_log_scale = nn.Parameter(torch.tensor(raw))
            #: Whether an optimiser steps ``raw_log_scale`` (as for ``learned_sigma``).
            self.optimiser_check = OptimiserCheck("raw_log_scale", "log-scale")
            watch(self, "optimiser_check")
        if self.scale_mode == "optimal":
            self.optimal = OptimalSigmaGaussian(
                scope="shared", decay=decay, train_sigma=train_sigma, min_log_sigma=None,
                min_sigma=min_sigma, mean_activation="identity", validate_args=False,
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        rearm(self, "optimiser_check")  # pickled or deep-copied: the hook is not live

    @property
    def train_bound_bias(self) -> str | None:
        return self.optimal.train_bound_bias if self.scale_mode == "optimal" else None

    def params_per_channel(self) -> int:
        return 1

    # -- the scale ------------------------------------------------------------------------------
    def _log_scale(self, loc: torch.Tensor, target: torch.Tensor | None,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
        """``log s`` (a scalar tensor, possibly with gradient; ``scale="optimal"``: from the
        observed entries of ``target`` under ``mask``)."""
        if self.scale_mode == "fixed":
            return torch.tensor(self.fixed_log_scale, dtype=loc.dtype, device=loc.device)
        if self.scale_mode == "learned":
            forward_watch(self, "optimiser_check")
            raw = self.raw_log_scale
        else:
            if target is not None:
                sigma = self.optimal(loc, target.to(loc.dtype) * BIN_WIDTH, mask=mask).sigma
            elif int(self.optimal.num_batches_tracked) > 0:
                sigma = self.optimal.sigma
            else:
                raise LikelihoodInputError(
                    f"{self.name}: scale='optimal' has no running estimate yet; call "
                    "head(params, target=x) (the scale is the MSE against the data)"
                )
            raw = sigma.to(loc.dtype).log() - math.log(self.family.std)
        return softclip(raw.to(loc.dtype), self.min_log_scale, self.max_log_scale)

    @property
    def scale(self) -> torch.Tensor:
        """The current shared scale ``s`` on the [0, 1] scale (detached; the running estimate for
        ``scale="optimal"``)."""
        if self.scale_mode == "fixed":
            return torch.tensor(self.fixed_log_scale).exp()
        if self.scale_mode == "learned":
            raw = self.raw_log_scale.detach()
        else:
            raw = self.optimal.sigma.log() - math.log(self.family.std)
        return softclip(raw, self.min_log_scale, self.max_log_scale).exp()

    @property
    def sigma(self) -> torch.Tensor:
        """Standard deviation of the continuous noise, ``scale * family.std`` (see class doc)."""
        return self.scale * self.family.std

    # -- the distribution -----------------------------------------------------------------------
    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        return self.masked_distribution(params, target, None)

    def masked_distribution(self, params: torch.Tensor, target: torch.Tensor | None,
                            mask: torch.Tensor | None) -> ImageLikelihood:
        """The distribution; ``scale="optimal"`` takes its MSE over the observed entries."""
        loc = self.mean_location(params)
        log_scale = self._log_scale(loc, target, mask)
        base = DiscretizedMixture(
            self.family, loc.unsqueeze(-1), log_scale.expand(loc.shape).unsqueeze(-1),
            validate_args=False,
        )
        sigma = log_scale.exp() * self.family.std
        return ImageLikelihood(base, "intensity", sigma=sigma, validate_args=self.validate_args)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, scale={self.scale_mode!r}, "
            f"min_log_scale={self.min_log_scale}, mean_activation={self.mean_activation!r}"
        )


def _inverse_softclip(y: float, minimum: float | None, maximum: float | None) -> float:
    """The ``x`` with ``softclip(x, minimum, maximum) == y`` (so ``init_scale`` is exact)."""
    if minimum is not None:
        if y <= minimum:
            raise ValueError(f"init log-scale {y:.4g} is not above min_log_scale {minimum}")
        y = minimum + math.log(math.expm1(y - minimum))
    if maximum is not None:
        if y >= maximum:
            raise ValueError(f"init log-scale {y:.4g} is not below max_log_scale {maximum}")
        y = maximum - math.log(math.expm1(maximum - y))
    return y


@register("discretized_gaussian", "Discretised Gaussian, one shared scale (learned/optimal/fixed)")
class DiscretizedGaussianHead(DiscretizedHead):
    """``discretized_gaussian``: discretised Gaussian per dimension, one shared scale
    (``sigma = scale``, ``effective_beta = 2 sigma^2``). See :class:`DiscretizedHead`."""

    family = FAMILIES["gaussian"]


@register("discretized_logistic", "Discretised logistic, one shared scale (learned/optimal/fixed)")
class DiscretizedLogisticHead(DiscretizedHead):
    """``discretized_logistic``: discretised logistic per dimension (Kingma et al., 2016), one
    shared scale ``s``; ``sigma = s pi / sqrt(3)`` (its standard deviation) and
    ``effective_beta = 2 sigma^2``. See :class:`DiscretizedHead`."""

    family = FAMILIES["logistic"]


@register("logistic_mixture", "Mixture of K discretised logistics per pixel/channel (no coupling)")
class LogisticMixtureHead(LikelihoodHead):
    """``logistic_mixture``: a mixture of ``components`` discretised logistics per pixel/channel.

    ``params`` is ``(B, 3K*C, *spatial)``, parameter-major with parameters ``0..K-1`` the mixture
    logits, ``K..2K-1`` the raw locations (``mean_activation`` applied, ``sigmoid`` by default,
    on the [0, 1] scale) and ``2K..3K-1`` the raw log-scales (soft-clipped to
    ``[min_log_scale, max_log_scale]``). Each channel has its own mixture, independent of the
    other channels given ``z`` (App. D: no autoregressive coupling, no mean-adjusting
    coefficients). ``sigma`` is ``None``.

    Args:
        components: ``K``, the logistics per pixel/channel (default 10, >= 1).
        min_log_scale: soft lower bound on each log-scale (default -6; ``None`` disables it).
        max_log_scale: soft upper bound on each log-scale (``None``, default: none).
        mean_activation: ``"sigmoid"`` (default) or ``"identity"`` on the locations.
    """

    data_kind = "intensity"

    def __init__(
        self,
        components: int = 10,
        min_log_scale: float | None = DEFAULT_MIN_LOG_SIGMA,
        max_log_scale: float | None = None,
        mean_activation: MeanActivation = "sigmoid",
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(validate_args=validate_args)
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(
                f"logistic_mixture: components must be an int >= 1, got {components!r}"
            )
        softclip(torch.zeros(()), min_log_scale, max_log_scale)  # validates the bounds
        self.components = components
        self.min_log_scale = min_log_scale
        self.max_log_scale = max_log_scale
        self.mean_activation = check_mean_activation(mean_activation)

    def params_per_channel(self) -> int:
        return 3 * self.components

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        k = self.components
        split = self.split_params(params).movedim(1, -1)  # (B, C, *spatial, 3K)
        logits, raw_loc, raw_log_scale = split[..., :k], split[..., k : 2 * k], split[..., 2 * k :]
        loc = self.mean_location(raw_loc)
        log_scale = softclip(raw_log_scale, self.min_log_scale, self.max_log_scale)
        base = DiscretizedMixture(FAMILIES["logistic"], loc, log_scale, logits, validate_args=False)
        return ImageLikelihood(base, "intensity", sigma=None, validate_args=self.validate_args)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, components={self.components}, "
            f"min_log_scale={self.min_log_scale}, mean_activation={self.mean_activation!r}"
        )
