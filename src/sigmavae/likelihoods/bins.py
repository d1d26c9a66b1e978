"""The 256 bins of 8-bit data: one definition of their edges and of the mass a density puts in them.

Intensity ``i`` (``0..255``) is the bin ``[(i - 1/2) / 255, (i + 1/2) / 255]`` of the ``[0, 1]``
data scale, except that the first and the last bins are open, ``(-inf, 0.5/255]`` and
``[254.5/255, +inf)`` (PixelCNN++, Salimans et al., 2017), so the 256 masses of any distribution
on the real line sum to one. Everything that discretises a continuous distribution uses this
module: the discretised heads (:mod:`.discretized`), and through
:meth:`~sigmavae.likelihoods.ImageLikelihood.bin_log_mass` /
:meth:`~sigmavae.likelihoods.ImageLikelihood.bin_cdf` the discretised ELBO and the calibration
metrics.

* :func:`bin_edges`, :func:`to_intensities`: the geometry;
* :func:`level_chunks`, :func:`quantile_by_counting`: exact brute force over the 256 levels
  (the mode, entropy and quantiles of distributions over intensities);
* :func:`log_mass_from_cdf`, :func:`cdf_at_upper_edge`: the generic rule for any distribution
  with a ``cdf`` (the plain difference of CDFs at the edges);
* :class:`Family`, :func:`discretized_log_prob`: the accurate rule for location-scale families
  (no cancellation in the tails or for narrow bins), used by the normal and logistic heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from .special import HALF_LOG_2PI, log1mexp, log_ndtr

#: Number of intensity levels of 8-bit data.
NUM_LEVELS = 256
#: The largest intensity.
MAX_LEVEL = NUM_LEVELS - 1
#: Width of one intensity bin on the [0, 1] scale.
BIN_WIDTH = 1.0 / MAX_LEVEL
LOG_BIN_WIDTH = math.log(BIN_WIDTH)
#: Floor of a bin mass computed as a difference of CDFs (``log`` of it is ``-690.8``).
TINY_MASS = 1e-300

# The Simpson rule replaces the log-CDF difference when a bin is this narrow relative to the
# scale on which the density varies (relative error of Simpson < 4e-12 there, while the difference
# formula is still free of catastrophic cancellation just above it).
_NARROW = 1e-2
# Hard floor on log-scales inside the bin formulas (see discretized_log_prob).
MIN_LOG_SCALE = -30.0
# Bound on standardised bin centres (squares stay finite in float32).
_MAX_Z = 1e15


# -- geometry -------------------------------------------------------------------------------------
def bin_edges(intensities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper edges ``(i -+ 1/2) / 255`` of the bins of ``intensities``, float64 on the
    [0, 1] scale, same shape. The first bin is open below and the last above: callers take
    ``F(lower) = 0`` where :func:`is_first` and ``F(upper) = 1`` where :func:`is_last`."""
    i = intensities.to(torch.float64)
    return (i - 0.5) * BIN_WIDTH, (i + 0.5) * BIN_WIDTH


def is_first(intensities: torch.Tensor) -> torch.Tensor:
    """Where the bin is the open first one (intensity 0): a bool tensor of the same shape."""
    return intensities <= 0


def is_last(intensities: torch.Tensor) -> torch.Tensor:
    """Where the bin is the open last one (intensity 255): a bool tensor of the same shape."""
    return intensities >= MAX_LEVEL


def to_intensities(value: torch.Tensor) -> torch.Tensor:
    """The 8-bit intensities of data: floats on the [0, 1] scale are multiplied by 255, rounded
    and clamped to ``0..255`` (float64); integer tensors are intensities already (unchanged)."""
    if value.is_floating_point():
        return torch.round(value.double() * MAX_LEVEL).clamp(0, MAX_LEVEL)
    return value


#: A CDF as a function of its argument (element-wise, broadcasting).
CdfFn = Callable[[torch.Tensor], torch.Tensor]


# -- enumerating the 256 levels (exact mode, entropy and quantiles of pmfs over intensities) -------
#: Values (elements times levels times mixture components) one chunk of an enumeration over the
#: levels may hold: 32 MiB in float64. Small batches take all 256 levels in one piece, large ones
#: a few levels at a time (at least one).
LEVEL_BUDGET = 1 << 22


def levels_per_chunk(elements: int, per_level: int = 1) -> int:
    """How many levels to enumerate at once for ``elements`` data elements, each holding
    ``per_level`` values per level (e.g. the components of a mixture): within
    :data:`LEVEL_BUDGET`, between 1 and 256."""
    return max(1, min(NUM_LEVELS, LEVEL_BUDGET // max(1, elements * per_level)))


def level_chunks(like: torch.Tensor, chunk: int, stop: int = NUM_LEVELS) -> Iterator[torch.Tensor]:
    """The intensities ``0..stop-1`` in consecutive pieces of at most ``chunk`` (at least one)
    values, as 1-D tensors of the dtype and device of ``like``."""
    step = max(1, chunk)
    for start in range(0, stop, step):
        yield torch.arange(start, min(start + step, stop), dtype=like.dtype, device=like.device)


def quantile_by_counting(cdf_at: CdfFn, q: torch.Tensor, like: torch.Tensor,
                         chunk: int) -> torch.Tensor:
    """The quantile function of a distribution over intensities: for each probability ``q`` the
    smallest intensity ``i`` with ``F(i) >= q``, i.e. the number of levels ``0..254`` whose CDF
    is below ``q`` (``F(255) = 1``). ``cdf_at(levels)``: levels ``(n,)`` -> CDFs ``(..., n)``,
    broadcasting with ``q[..., None]``; the result is ``int64`` intensities of the broadcast
    shape. Exact (brute force over the levels, ``chunk`` at a time: :func:`levels_per_chunk`)."""
    q = q.to(like.dtype).unsqueeze(-1)
    count: torch.Tensor | None = None
    for levels in level_chunks(like, chunk, stop=MAX_LEVEL):
        below = (cdf_at(levels) < q).sum(-1)
        count = below if count is None else count + below
    assert count is not None
    return count


# -- the generic rule: any distribution with a cdf on the [0, 1] scale -----------------------------


def cdf_at_upper_edge(cdf: CdfFn, intensities: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``P(X <= upper edge of the bin)`` per element: ``cdf((i + 1/2) / 255)``, 1 for the open
    last bin. ``cdf`` is evaluated at edges cast to ``dtype`` (the distribution's parameter
    dtype), and the result has the dtype ``cdf`` returns."""
    _, hi = bin_edges(intensities)
    f_hi = cdf(hi.clamp(0.0, 1.0).to(dtype))  # the clamp only keeps unused inputs in range
    return torch.where(is_last(intensities), torch.ones_like(f_hi), f_hi)


def log_mass_from_cdf(cdf: CdfFn, intensities: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``log(F(upper) - F(lower))`` per element in float64 nats, open edge bins, the difference
    floored at :data:`TINY_MASS`. ``cdf`` is evaluated at edges cast to ``dtype``; accurate only
    while the mass is well above the rounding of ``cdf`` near 1 (for tails use a family's own
    rule, e.g. :func:`discretized_log_prob`)."""
    lo, hi = bin_edges(intensities)
    lo, hi = lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)  # only keeps the unused inputs in range
    f_lo = torch.where(is_first(intensities), torch.zeros_like(lo), cdf(lo.to(dtype)).double())
    f_hi = torch.where(is_last(intensities), torch.ones_like(hi), cdf(hi.to(dtype)).double())
    return (f_hi - f_lo).clamp_min(TINY_MASS).log()


# -- location-scale families: accurate bin masses --------------------------------------------------
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

    def log_bin_mass(
        self, centre: torch.Tensor, width: torch.Tensor, log_width: torch.Tensor,
        first: torch.Tensor, last: torch.Tensor,
    ) -> torch.Tensor:
        """The log-mass of the bin ``(centre - width/2, centre + width/2]`` (standardised),
        open below where ``first`` and above where ``last`` (the edge bins)."""
        interior = self.log_interval(centre, width, log_width)
        below = self.log_cdf(centre + 0.5 * width)
        above = self.log_sf(centre - 0.5 * width)
        return torch.where(first, below, torch.where(last, above, interior))

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


class Normal01(Family):
    """The standard normal: ``log_ndtr`` for tails, Simpson's rule for narrow bins."""

    name = "gaussian"
    std = 1.0

    def log_cdf(self, z: torch.Tensor) -> torch.Tensor:
        return log_ndtr(z)

    def log_pdf(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z * z - HALF_LOG_2PI

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

    def log_bin_mass(
        self, centre: torch.Tensor, width: torch.Tensor, log_width: torch.Tensor,
        first: torch.Tensor, last: torch.Tensor,
    ) -> torch.Tensor:
        """As :meth:`Family.log_bin_mass`, with the edge bins' ``logsigmoid(hi)`` and
        ``logsigmoid(-lo)`` being the interior's two terms: computed once (the same numbers,
        half the ``logsigmoid`` work of the logistic mixture's step)."""
        below, above, tail = self._log_interval_terms(centre, width, log_width)
        return torch.where(first, below, torch.where(last, above, below + above + tail))

    def log_interval(
        self, centre: torch.Tensor, width: torch.Tensor, log_width: torch.Tensor
    ) -> torch.Tensor:
        below, above, tail = self._log_interval_terms(centre, width, log_width)
        return below + above + tail

    @staticmethod
    def _log_interval_terms(
        centre: torch.Tensor, width: torch.Tensor, log_width: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``logsigmoid(hi)``, ``logsigmoid(-lo)`` and ``log(1 - exp(-width))``."""
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
        return F.logsigmoid(hi), F.logsigmoid(-lo), tail


#: The families by name.
FAMILIES: dict[str, Family] = {"gaussian": Normal01(), "logistic": Logistic01()}


def discretized_log_prob(
    family: Family, x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Log-mass (nats) of the 8-bit intensity ``x`` under the discretised ``family(loc, scale)``.

    ``x`` holds integer intensities (any dtype), ``loc`` is on the ``[0, 1]`` scale and
    ``log_scale`` is ``log`` of the scale there; all broadcast together, and the result has the
    dtype of ``loc``. Intensity 0 gets ``log F((0.5/255 - loc) / scale)``, 255 gets
    ``log S((254.5/255 - loc) / scale)``, the others the mass of their bin; the formulas are
    selected by ``torch.where`` among finite values, so gradients are finite everywhere (no
    infinite bin edges). ``log_scale`` is clamped below at ``-30`` (a scale of 1e-13, far below a
    bin width, where every bin is already a point mass) and the standardised bin centre to
    ``+-1e15`` (masses ``< exp(-1e15)``), so nothing overflows even in float32.
    """
    x = x.to(loc.dtype)
    log_scale = log_scale.clamp_min(MIN_LOG_SCALE)
    centre = ((x * BIN_WIDTH - loc) * torch.exp(-log_scale)).clamp(-_MAX_Z, _MAX_Z)
    log_width = LOG_BIN_WIDTH - log_scale
    width = torch.exp(log_width)
    return family.log_bin_mass(centre, width, log_width, is_first(x), is_last(x))
