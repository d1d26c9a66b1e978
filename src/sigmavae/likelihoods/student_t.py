"""Per-pixel Student-t decoder (Takahashi et al., 2018; the paper's "Student-t VAE", Table 2).

``p(x_d | z) = StudentT(x_d; df_d, mu_d, s_d)`` independently per data dimension, on the scale of
the data (a continuous head, densities in nats; ``data_range`` ``"unit"`` [0, 1] by default,
``"signed"`` or ``"real"``). The decoder predicts the location, a log-scale
(soft-clipped like the per-pixel sigma-VAE) and, unless ``df`` is fixed, the degrees of freedom.

``torch.distributions.StudentT`` has no ``cdf`` and evaluates ``lgamma((df+1)/2) - lgamma(df/2)``
by cancellation, which loses ``~1e-3`` nats per dimension in float32 once ``df`` is large;
:class:`StudentTWithCdf` fixes both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Chi2, Distribution, StudentT
from torch.distributions.utils import broadcast_all

from ._location import (
    ContinuousMeanActivation,
    DataRange,
    check_data_range,
    resolve_mean_activation,
)
from .base import ImageLikelihood, LikelihoodHead, ShapeLike
from .bins import TINY_MASS, bin_edges, is_first, is_last
from .registry import register
from .softclip import DEFAULT_MIN_LOG_SIGMA, softclip
from .special import betainc, log_gamma_half_ratio, softplus

#: Default lower bound on the degrees of freedom: ``df = min_df + softplus(raw) > 2`` keeps the
#: variance finite, so ``mean`` and ``variance`` are defined for every decoder output (with
#: ``df <= 1`` even the mean is undefined and torch returns NaN). Tails as heavy as ``df -> 2``
#: remain available.
DEFAULT_MIN_DF = 2.0

# Above this many degrees of freedom the CDF uses Wallace's normal approximation (absolute error
# ~1e-10 at df = 1e4, falling as 1/df^2), where the continued fraction would need > 300 terms.
_WALLACE_DF = 1.0e4


def student_t_cdf(
    value: torch.Tensor,
    df: torch.Tensor,
    loc: torch.Tensor,
    scale: torch.Tensor,
    log_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """``P(X <= value)`` for ``X ~ StudentT(df, loc, scale)``, element-wise (broadcasting).

    Uses ``P(T <= t) = I_{df/(df+t^2)}(df/2, 1/2) / 2`` for ``t < 0`` (the regularised incomplete
    beta function, :func:`~sigmavae.likelihoods.special.betainc`, in float64) and Wallace's
    normal approximation for ``df > 1e4``. Absolute error below ``1e-9``; the result has the
    dtype of the inputs and is differentiable through autograd. ``log_scale``
    (``log(scale)``), if given, is used instead of ``scale`` (no underflow).
    """
    if log_scale is None:
        log_scale = scale.log()
    value, df, loc, log_scale = torch.broadcast_tensors(value, df, loc, log_scale)
    out_dtype = torch.promote_types(value.dtype, loc.dtype)
    diff = value.to(torch.float64) - loc.to(torch.float64)
    nu = df.to(torch.float64)
    # Work with s = log(t^2 / nu), so nothing overflows for any finite inputs.
    at_loc = diff == 0  # P = 1/2 exactly; safe inputs elsewhere keep the gradients finite
    log_abs_t = torch.log(torch.where(at_loc, torch.ones_like(diff), diff).abs())
    log_abs_t = log_abs_t - log_scale.to(torch.float64)
    wallace = nu > _WALLACE_DF
    nu_cf = torch.where(wallace, torch.ones_like(nu), nu)  # safe inputs for the unused branch
    nu_w = torch.where(wallace, nu, torch.full_like(nu, 2 * _WALLACE_DF))

    # Incomplete beta: I_x(nu/2, 1/2) with x = nu / (nu + t^2), 1 - x = t^2 / (nu + t^2).
    s_cf = 2.0 * log_abs_t - torch.log(nu_cf)
    ibeta = betainc(0.5 * nu_cf, torch.full_like(nu_cf, 0.5), -softplus(s_cf), -softplus(-s_cf))
    lower_cf = 0.5 * ibeta  # P(T <= -|t|)

    # Wallace (1959): z = (8 nu + 1) / (8 nu + 3) * sqrt(nu log(1 + t^2 / nu)).
    s_w = 2.0 * log_abs_t - torch.log(nu_w)
    z = (8 * nu_w + 1) / (8 * nu_w + 3) * torch.sqrt(nu_w * softplus(s_w))
    lower_w = torch.special.ndtr(-z)

    lower = torch.where(wallace, lower_w, lower_cf)
    cdf = torch.where(diff < 0, lower, 1.0 - lower)
    return torch.where(at_loc, torch.full_like(cdf, 0.5), cdf).to(out_dtype)


def _log1p_square(diff: torch.Tensor, log_scale: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """``log(1 + y^2 / df)`` with ``y = diff / exp(log_scale)``, finite for any finite inputs.

    ``y`` is formed directly where that cannot overflow (the accurate, common case) and via
    ``log|diff| - log_scale`` otherwise; where ``y^2 > df`` the result is taken as
    ``2 log a + log1p(a^-2)`` (``a = |y| / sqrt(df)``). Unused branches get safe inputs, so the
    gradients stay finite too.
    """
    diff, log_scale, df = torch.broadcast_tensors(diff, log_scale, df)
    ones = torch.ones_like(diff)
    direct = (log_scale.abs() < 60.0) & (diff.abs() < 1e10)
    y = torch.where(direct, diff, torch.zeros_like(diff)) * torch.exp(
        -torch.where(direct, log_scale, torch.zeros_like(log_scale))
    )
    # Where y is formed directly it may underflow to 0 although diff is not 0 (a tiny diff over
    # a large scale): treat it as 0 then, as log|y| would make the gradient NaN (0 * inf).
    nonzero = torch.where(direct, y != 0, diff != 0)
    via_log = ~direct & nonzero
    log_abs_y = torch.where(
        direct,
        torch.log(torch.where(direct & nonzero, y, ones).abs()),
        torch.log(torch.where(via_log, diff, ones).abs())
        - torch.where(via_log, log_scale, torch.zeros_like(log_scale)),
    )
    log_a = log_abs_y - 0.5 * torch.log(df)
    big = nonzero & (log_a > 0)
    log_a_big = torch.where(big, log_a, ones)
    # |a| <= 1 here: from y where direct, else from log_a (0 at diff == 0).
    y_small = torch.where(big, torch.zeros_like(y), y)
    a2_direct = y_small * y_small / df
    log_a_small = torch.where(~big & via_log, log_a, torch.zeros_like(log_a))
    a2_log = torch.where(~big & via_log, torch.exp(2.0 * log_a_small), torch.zeros_like(log_a))
    a2_small = torch.where(direct, a2_direct, a2_log)
    return torch.where(
        big,
        2.0 * log_a_big + torch.log1p(torch.exp(-2.0 * log_a_big)),
        torch.log1p(a2_small),
    )


class StudentTWithCdf(StudentT):
    """``torch.distributions.StudentT`` with a float32-stable ``log_prob``, a ``cdf`` and the
    tail-accurate masses of the 8-bit intensity bins (:meth:`bin_log_mass`).

    Element-wise: ``batch_shape`` is the broadcast shape of ``df``, ``loc``, ``scale``;
    ``log_prob`` is in nats per element. Passing ``log_scale`` (the log of ``scale``) keeps
    ``log_prob`` finite even where ``scale`` itself overflows. ``arg_constraints``, ``support``
    and ``validate_args`` are torch's; ``expand`` keeps ``log_scale``.
    """

    def __init__(
        self,
        df: torch.Tensor | float,
        loc: torch.Tensor | float = 0.0,
        scale: torch.Tensor | float = 1.0,
        validate_args: bool | None = None,
        log_scale: torch.Tensor | None = None,
    ) -> None:
        # torch's StudentT.__init__ builds its Chi2 (used by rsample) with the *global*
        # validation default whatever validate_args says: with validation on, every call checked
        # df (a device sync, and a graph break under torch.compile). Here it follows
        # validate_args; the rest is torch's constructor.
        self.df, self.loc, self.scale = broadcast_all(df, loc, scale)
        self._chi2 = Chi2(self.df, validate_args=validate_args)
        Distribution.__init__(self, self.df.size(), validate_args=validate_args)
        self.log_scale = self.scale.log() if log_scale is None else log_scale.expand_as(self.scale)

    def expand(self, batch_shape: ShapeLike,
               _instance: StudentTWithCdf | None = None) -> StudentTWithCdf:
        new = self._get_checked_instance(StudentTWithCdf, _instance)
        super().expand(batch_shape, _instance=new)  # fills in ``new``
        new.log_scale = self.log_scale.expand(torch.Size(batch_shape))
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        df = self.df
        return (
            -0.5 * (df + 1.0) * _log1p_square(value - self.loc, self.log_scale, df)
            - self.log_scale
            - 0.5 * torch.log(df * math.pi)
            + log_gamma_half_ratio(0.5 * df)
        )

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return student_t_cdf(value, self.df, self.loc, self.scale, log_scale=self.log_scale)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """Not provided: raises ``NotImplementedError`` saying why."""
        raise NotImplementedError(
            "StudentT icdf: the inverse Student-t CDF (an inverse regularised incomplete beta) "
            "has no closed form and is not implemented; invert cdf numerically, e.g. "
            "scipy.stats.t.ppf(q, df, loc, scale)")

    def bin_log_mass(self, intensities: torch.Tensor, offset: float = 0.0,
                     width: float = 1.0) -> torch.Tensor:
        """``log P(bin of intensity i)`` (the bins of :mod:`.bins`, mapped to the data by
        ``u -> offset + width * u``), float64 nats, element-wise; every CDF is taken in its
        lower tail by symmetry, so tail bins keep their digits."""
        df, loc = self.df.double(), self.loc.double()
        log_scale = self.log_scale.double()
        if offset != 0.0 or width != 1.0:
            loc, log_scale = (loc - offset) / width, log_scale - math.log(width)
        scale = log_scale.exp()
        lo, hi = bin_edges(intensities)
        first, last = is_first(intensities), is_last(intensities)

        def lower_tail(t: torch.Tensor) -> torch.Tensor:
            # F(t) if t <= loc else S(t) = F(2 loc - t): always the smaller tail, accurately.
            reflected = torch.where(t > loc, 2 * loc - t, t)
            return student_t_cdf(reflected, df, loc, scale, log_scale=log_scale)

        g_lo = torch.where(first, torch.zeros_like(lo), lower_tail(lo))
        g_hi = torch.where(last, torch.zeros_like(hi), lower_tail(hi))
        below = hi <= loc  # F(hi) - F(lo)
        above = lo >= loc  # S(lo) - S(hi)
        mass = torch.where(below, g_hi - g_lo,
                           torch.where(above, g_lo - g_hi, 1.0 - g_lo - g_hi))
        return mass.clamp_min(TINY_MASS).log()


@register("student_t", "Student-t per pixel/channel: predicted location, scale and df")
class StudentTHead(LikelihoodHead):
    """``student_t``: a Student-t per pixel and channel with network-predicted scale and df.

    ``params`` is ``(B, k*C, *spatial)``, parameter-major: the raw locations (``mean_activation``
    applied: ``sigmoid`` by default), the raw log-scales (soft-clipped to ``[min_log_scale,
    max_log_scale]``, default ``min_log_scale = -6`` as for the per-pixel sigma-VAE) and, unless
    ``df`` is fixed, the raw degrees of freedom, ``df = min_df + softplus(raw)``; so ``k = 3``
    (``k = 2`` with a fixed ``df``). ``min_df`` defaults to 2 so that the variance (and the mean)
    is always finite. The distribution's ``sigma`` is ``None`` (the scale is not a standard
    deviation); its per-dimension scale is ``dist.base_dist.scale``.

    Args:
        df: a fixed number of degrees of freedom (> 0), or ``None`` to predict it per pixel.
        min_df: lower bound of the predicted ``df`` (> 0).
        min_log_scale: soft lower bound on the log-scale (``None`` disables it).
        max_log_scale: soft upper bound on the log-scale (``None`` disables it).
        mean_activation: ``"sigmoid"``, ``"tanh"`` or ``"identity"`` for the locations; by
            default the one of ``data_range`` (``sigmoid`` for ``unit``).
        data_range: ``"unit"`` ([0, 1], default), ``"signed"`` ([-1, 1]) or ``"real"``.
    """

    data_kind = "unit"

    def __init__(
        self,
        df: float | None = None,
        min_df: float = DEFAULT_MIN_DF,
        min_log_scale: float | None = DEFAULT_MIN_LOG_SIGMA,
        max_log_scale: float | None = None,
        mean_activation: ContinuousMeanActivation | None = None,
        validate_args: bool | None = None,
        data_range: DataRange = "unit",
    ) -> None:
        super().__init__(validate_args=validate_args)
        if df is not None and not (df > 0 and math.isfinite(df)):
            raise ValueError(f"student_t: df must be a positive finite number, got {df}")
        if not (min_df > 0 and math.isfinite(min_df)):
            raise ValueError(f"student_t: min_df must be positive and finite, got {min_df}")
        softclip(torch.zeros(()), min_log_scale, max_log_scale)  # validates the bounds
        self.df = None if df is None else float(df)
        self.min_df = float(min_df)
        self.min_log_scale = min_log_scale
        self.max_log_scale = max_log_scale
        self.data_range = check_data_range(data_range)
        self.mean_activation = resolve_mean_activation(mean_activation, data_range)

    def params_per_channel(self) -> int:
        return 2 if self.df is not None else 3

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        parts = self.split_params(params).unbind(1)
        loc = self.mean_location(parts[0])
        log_scale = softclip(parts[1], self.min_log_scale, self.max_log_scale)
        if self.df is None:
            df = self.min_df + F.softplus(parts[2])
        else:
            df = torch.full_like(loc, self.df)
        base = StudentTWithCdf(df, loc, log_scale.exp(), validate_args=False, log_scale=log_scale)
        return ImageLikelihood(base, "unit", sigma=None, validate_args=self.validate_args,
                               data_range=self.data_range)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, df={self.df}, min_df={self.min_df}, "
            f"min_log_scale={self.min_log_scale}, mean_activation={self.mean_activation!r}"
        )
