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
one), parameterised by a standardised :class:`Family` that knows its log-CDF and log-survival
function and how to compute the log-mass of a bin without cancellation.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from ._location import MeanActivation, check_mean_activation, location
from .base import NUM_LEVELS, ImageLikelihood, LikelihoodHead, LikelihoodInputError
from .optimal import (
    PUBLIC_CODE_MIN_LOG_SIGMA,
    QUANTIZATION_SIGMA,
    OptimalSigmaGaussian,
    TrainSigma,
)
from .softclip import DEFAULT_MIN_LOG_SIGMA, softclip

_NO_SHAPE = torch.Size()

#: Width of one intensity bin on the [0, 1] scale.
BIN_WIDTH = 1.0 / (NUM_LEVELS - 1)
_LOG_BIN_WIDTH = math.log(BIN_WIDTH)
_LN2 = math.log(2.0)
# The Simpson rule replaces the log-CDF difference when a bin is this narrow relative to the
# scale on which the density varies (relative error of Simpson < 4e-12 there, while the difference
# formula is still free of catastrophic cancellation just above it).
_NARROW = 1e-2
# Hard floor on log-scales inside the bin formulas (see discretized_log_prob).
_MIN_LOG_SCALE = -30.0
# Bound on standardised bin centres (squares stay finite in float32).
_MAX_Z = 1e15
# Thresholds per chunk when summing survival functions over the 255 inner bin edges (memory).
_LEVEL_CHUNK = 32


def log1mexp(u: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-u))`` for ``u > 0``, accurate everywhere (Maechler, 2012: switch at ln 2)."""
    small = u < _LN2
    u_small = torch.where(small, u, torch.full_like(u, _LN2))  # safe inputs: finite gradients
    u_large = torch.where(small, torch.full_like(u, _LN2), u)
    return torch.where(small, torch.log(-torch.expm1(-u_small)), torch.log1p(-torch.exp(-u_large)))


class Family:
    """A standardised (location 0, scale 1) continuous distribution, symmetric about 0."""

    name = ""
    #: Standard deviation of the standardised distribution.
    std = 1.0

    def log_cdf(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_sf(self, z: torch.Tensor) -> torch.Tensor:
        """``log P(Z > z) = log_cdf(-z)`` by symmetry."""
        return self.log_cdf(-z)

    def log_pdf(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def cdf(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_interval(
        self, centre: torch.Tensor, width: torch.Tensor, log_width: torch.Tensor
    ) -> torch.Tensor:
        """``log P(centre - width/2 < Z <= centre + width/2)``, finite for any finite inputs.

        ``log_width`` is ``log(width)``, passed separately so a width that underflows to zero
        (a huge scale) still gives a finite answer and gradient.

        Generic: by symmetry the bin is moved to ``centre <= 0``, where ``log_cdf`` is accurate,
        and ``log(F(hi) - F(lo)) = log F(hi) + log1mexp(log F(hi) - log F(lo))``. For bins narrow
        relative to the density's variation that difference cancels, so there Simpson's rule on
        ``log_pdf`` is used instead (both branches get safe inputs, so gradients stay finite).
        """
        c = -centre.abs()
        narrow = width * torch.clamp(c.abs(), min=1.0) < _NARROW
        # Difference of log-CDFs (wide bins).
        c_w = torch.where(narrow, torch.zeros_like(c), c)
        w_w = torch.where(narrow, torch.ones_like(width), width)
        log_hi = self.log_cdf(c_w + 0.5 * w_w)
        log_lo = self.log_cdf(c_w - 0.5 * w_w)
        # In the wide branch the true gap is > ~5e-3; the floor only catches float32 rounding in
        # the far tail (|log F| > 1e5), where it changes the result by far less than an ulp.
        gap = (log_hi - log_lo).clamp_min(torch.finfo(log_hi.dtype).eps)
        wide_val = log_hi + log1mexp(gap)
        # Simpson's rule (narrow bins).
        c_n = torch.where(narrow, c, torch.zeros_like(c))
        w_n = torch.where(narrow, width, torch.full_like(width, 0.5 * _NARROW))
        log_w_n = torch.where(narrow, log_width, torch.full_like(width, math.log(0.5 * _NARROW)))
        lp_c = self.log_pdf(c_n)
        ratio = (
            torch.exp(self.log_pdf(c_n - 0.5 * w_n) - lp_c)
            + 4.0
            + torch.exp(self.log_pdf(c_n + 0.5 * w_n) - lp_c)
        )
        narrow_val = lp_c + log_w_n + torch.log(ratio / 6.0)
        return torch.where(narrow, narrow_val, wide_val)


class _LogNdtr(torch.autograd.Function):
    """``log_ndtr`` with a stable gradient: torch's float32 backward of ``log_ndtr`` is off by
    ~1e-3 at ``z = -300`` and NaN beyond ``~-1e4``; here ``d/dz = phi(z) / Phi(z)`` is computed
    as ``sqrt(2/pi) / erfcx(-z/sqrt(2))`` for ``z < 0`` (the inverse Mills ratio, no
    cancellation). The backward is itself differentiable (double backward works)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        return torch.special.log_ndtr(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return grad * _ndtr_hazard(z)


def _ndtr_hazard(z: torch.Tensor) -> torch.Tensor:
    """``phi(z) / Phi(z)``, accurate for all ``z``."""
    neg = z < 0
    z_neg = torch.where(neg, z, torch.zeros_like(z))
    z_pos = torch.where(neg, torch.zeros_like(z), z)
    left = math.sqrt(2 / math.pi) / torch.special.erfcx(-z_neg * math.sqrt(0.5))
    right = torch.exp(-0.5 * z_pos * z_pos) / (math.sqrt(2 * math.pi) * torch.special.ndtr(z_pos))
    return torch.where(neg, left, right)


def log_ndtr(z: torch.Tensor) -> torch.Tensor:
    """``log Phi(z)`` (``torch.special.log_ndtr``) with a gradient stable in float32."""
    return _LogNdtr.apply(z)


class Normal01(Family):
    """The standard normal: ``log_ndtr`` for tails, Simpson's rule for narrow bins."""

    name = "gaussian"
    std = 1.0
    _HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

    def log_cdf(self, z: torch.Tensor) -> torch.Tensor:
        return log_ndtr(z)

    def log_pdf(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z * z - self._HALF_LOG_2PI

    def cdf(self, z: torch.Tensor) -> torch.Tensor:
        return torch.special.ndtr(z)

    def sample(self, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, dtype=like.dtype, device=like.device)


class Logistic01(Family):
    """The standard logistic, whose bin masses have the exact cancellation-free form
    ``log(sigmoid(hi) - sigmoid(lo)) = logsigmoid(hi) + logsigmoid(-lo) + log(-expm1(-width))``."""

    name = "logistic"
    std = math.pi / math.sqrt(3.0)

    def log_cdf(self, z: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(z)

    def log_pdf(self, z: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(z) + F.logsigmoid(-z)

    def cdf(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z)

    def sample(self, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        finfo = torch.finfo(like.dtype)
        u = torch.rand(shape, dtype=like.dtype, device=like.device).clamp(finfo.tiny, 1 - finfo.eps)
        return torch.log(u) - torch.log1p(-u)

    def log_interval(
        self, centre: torch.Tensor, width: torch.Tensor, log_width: torch.Tensor
    ) -> torch.Tensor:
        hi, lo = centre + 0.5 * width, centre - 0.5 * width
        # log(1 - exp(-w)): a series in w below 1e-3 (error < 1e-15), so w -> 0 stays finite.
        small = width < 1e-3
        w_big = torch.where(small, torch.ones_like(width), width)
        w_small = torch.where(small, width, torch.zeros_like(width))
        log_w_small = torch.where(small, log_width, torch.zeros_like(width))
        tail = torch.where(
            small,
            log_w_small - 0.5 * w_small + w_small * w_small / 24.0,
            torch.log(-torch.expm1(-w_big)),
        )
        return F.logsigmoid(hi) + F.logsigmoid(-lo) + tail


FAMILIES: dict[str, Family] = {"gaussian": Normal01(), "logistic": Logistic01()}


def discretized_log_prob(
    family: Family, x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Log-mass (nats) of the 8-bit intensity ``x`` under the discretised ``family(loc, scale)``.

    ``x`` holds integer intensities (any dtype), ``loc`` is on the ``[0, 1]`` scale and
    ``log_scale`` is ``log`` of the scale there; all broadcast together. Intensity 0 gets
    ``log F((0.5/255 - loc) / scale)``, 255 gets ``log S((254.5/255 - loc) / scale)``, the others
    the mass of their bin; the formulas are selected by ``torch.where`` among finite values, so
    gradients are finite everywhere (no infinite bin edges). ``log_scale`` is clamped below at
    ``-30`` (a scale of 1e-13, far below a bin width, where every bin is already a point mass)
    and the standardised bin centre to ``+-1e15`` (masses ``< exp(-1e15)``), so nothing overflows
    even in float32.
    """
    x = x.to(loc.dtype)
    log_scale = log_scale.clamp_min(_MIN_LOG_SCALE)
    centre = ((x * BIN_WIDTH - loc) * torch.exp(-log_scale)).clamp(-_MAX_Z, _MAX_Z)
    log_width = _LOG_BIN_WIDTH - log_scale
    width = torch.exp(log_width)
    interior = family.log_interval(centre, width, log_width)
    first = family.log_cdf(centre + 0.5 * width)
    last = family.log_sf(centre - 0.5 * width)
    return torch.where(x <= 0, first, torch.where(x >= NUM_LEVELS - 1, last, interior))


class DiscretizedMixture(Distribution):
    """A mixture of ``K`` discretised ``family`` distributions over intensities ``0..255``.

    Element-wise: ``loc`` and ``log_scale`` have shape ``batch_shape + (K,)`` (``loc`` on the
    [0, 1] scale), ``mixture_logits`` too, or ``None`` for ``K = 1``. ``log_prob`` is in nats per
    element, ``mean``/``variance`` in intensity units (exact sums over the 256 levels), ``cdf``
    exact, ``sample`` returns ``int64`` intensities.
    """

    arg_constraints: dict = {}  # noqa: RUF012
    support = constraints.integer_interval(0, NUM_LEVELS - 1)
    has_enumerate_support = False

    def __init__(
        self,
        family: Family,
        loc: torch.Tensor,
        log_scale: torch.Tensor,
        mixture_logits: torch.Tensor | None = None,
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
        self.log_scale = log_scale.clamp_min(_MIN_LOG_SCALE)
        self.mixture_logits = mixture_logits
        super().__init__(batch_shape=loc.shape[:-1], validate_args=False)

    @property
    def scale(self) -> torch.Tensor:
        """Scales on the [0, 1] scale, ``batch_shape + (K,)``."""
        return self.log_scale.exp()

    def _log_weights(self) -> torch.Tensor | None:
        return None if self.mixture_logits is None else F.log_softmax(self.mixture_logits, -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
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
        value = value.to(self.loc.dtype)
        below = self._upper_edge_cdf(value.unsqueeze(-1)).squeeze(-1)
        return torch.where(value >= NUM_LEVELS - 1, torch.ones_like(below), below)

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``E[X]`` and ``E[X^2]`` exactly, as ``sum_i P(X > i)`` and ``sum_i (2i+1) P(X > i)``
        over ``i = 0..254``; one component and a chunk of levels at a time (memory: the batch
        times ``_LEVEL_CHUNK``)."""
        weights = None if self.mixture_logits is None else torch.softmax(self.mixture_logits, -1)
        first = torch.zeros(self.batch_shape, dtype=self.loc.dtype, device=self.loc.device)
        second = torch.zeros_like(first)
        for k in range(self.loc.shape[-1]):
            loc = self.loc[..., k : k + 1]
            inv_scale = torch.exp(-self.log_scale[..., k : k + 1])
            first_k, second_k = torch.zeros_like(first), torch.zeros_like(first)
            for start in range(0, NUM_LEVELS - 1, _LEVEL_CHUNK):
                levels = torch.arange(
                    start, min(start + _LEVEL_CHUNK, NUM_LEVELS - 1),
                    dtype=self.loc.dtype, device=self.loc.device,
                )
                # P(X > i) = S((i + 1/2) / 255) = F(-z) by symmetry (accurate in the tail).
                sf = self.family.cdf((loc - (levels + 0.5) * BIN_WIDTH) * inv_scale)
                first_k = first_k + sf.sum(-1)
                second_k = second_k + (sf * (2 * levels + 1)).sum(-1)
            if weights is None:
                first, second = first + first_k, second + second_k
            else:
                first = first + weights[..., k] * first_k
                second = second + weights[..., k] * second_k
        return first, second

    @property
    def mean(self) -> torch.Tensor:
        """Expected intensity (float, 0..255), exact."""
        return self._moments()[0]

    @property
    def variance(self) -> torch.Tensor:
        first, second = self._moments()
        return (second - first * first).clamp_min(0.0)

    def sample(self, sample_shape: torch.Size | tuple = _NO_SHAPE) -> torch.Tensor:
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
            scale = log_scale.clamp_max(-_MIN_LOG_SCALE).exp()
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
      likelihood almost flat across the 256 bins);
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
        validate: bool = True,
    ) -> None:
        super().__init__(validate=validate)
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
            self.scale_mode = scale
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
        if self.scale_mode == "optimal":
            self.optimal = OptimalSigmaGaussian(
                scope="shared", decay=decay, train_sigma=train_sigma, min_log_sigma=None,
                min_sigma=min_sigma, mean_activation="identity", validate=False,
            )

    @property
    def train_bound_bias(self) -> str | None:  # type: ignore[override]
        return self.optimal.train_bound_bias if self.scale_mode == "optimal" else None

    def params_per_channel(self) -> int:
        return 1

    # -- the scale ------------------------------------------------------------------------------
    def _log_scale(self, loc: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """``log s`` (a scalar tensor, possibly with gradient)."""
        if self.scale_mode == "fixed":
            return torch.tensor(self.fixed_log_scale, dtype=loc.dtype, device=loc.device)
        if self.scale_mode == "learned":
            raw = self.raw_log_scale
        else:
            if target is not None:
                sigma = self.optimal(loc, target.to(loc.dtype) * BIN_WIDTH).sigma
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
        loc = location(params, self.mean_activation)
        log_scale = self._log_scale(loc, target)
        base = DiscretizedMixture(
            self.family, loc.unsqueeze(-1), log_scale.expand(loc.shape).unsqueeze(-1)
        )
        sigma = log_scale.exp() * self.family.std
        return ImageLikelihood(base, "intensity", sigma=sigma, validate=self.validate)

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


class DiscretizedGaussianHead(DiscretizedHead):
    """``discretized_gaussian``: discretised Gaussian per dimension, one shared scale
    (``sigma = scale``, ``effective_beta = 2 sigma^2``). See :class:`DiscretizedHead`."""

    name = "discretized_gaussian"
    family = FAMILIES["gaussian"]


class DiscretizedLogisticHead(DiscretizedHead):
    """``discretized_logistic``: discretised logistic per dimension (Kingma et al., 2016), one
    shared scale ``s``; ``sigma = s pi / sqrt(3)`` (its standard deviation) and
    ``effective_beta = 2 sigma^2``. See :class:`DiscretizedHead`."""

    name = "discretized_logistic"
    family = FAMILIES["logistic"]


class LogisticMixtureHead(LikelihoodHead):
    """``logistic_mixture``: a mixture of ``components`` discretised logistics per pixel/channel.

    ``params`` is ``(B, 3K*C, *spatial)``, parameter-major with parameters ``0..K-1`` the mixture
    logits, ``K..2K-1`` the raw locations (``mean_activation`` applied, ``sigmoid`` by default,
    on the [0, 1] scale) and ``2K..3K-1`` the raw log-scales (soft-clipped to
    ``[min_log_scale, max_log_scale]``). Each channel has its own mixture, independent of the
    other channels given ``z`` (App. D: no autoregressive coupling, no mean-adjusting
    coefficients). ``sigma`` is ``None``.
    """

    name = "logistic_mixture"
    data_kind = "intensity"

    def __init__(
        self,
        components: int = 10,
        min_log_scale: float | None = DEFAULT_MIN_LOG_SIGMA,
        max_log_scale: float | None = None,
        mean_activation: MeanActivation = "sigmoid",
        validate: bool = True,
    ) -> None:
        super().__init__(validate=validate)
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
        loc = location(raw_loc, self.mean_activation)
        log_scale = softclip(raw_log_scale, self.min_log_scale, self.max_log_scale)
        base = DiscretizedMixture(FAMILIES["logistic"], loc, log_scale, logits)
        return ImageLikelihood(base, "intensity", sigma=None, validate=self.validate)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, components={self.components}, "
            f"min_log_scale={self.min_log_scale}, mean_activation={self.mean_activation!r}"
        )
