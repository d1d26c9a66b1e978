"""The likelihood-head abstraction shared by every decoder distribution.

A *head* turns the raw output of a decoder network into a distribution ``p(x|z)`` over a batch of
data: images ``(B, C, H, W)``, vectors ``(B, D)``, sequences ``(B, T, ...)``, any ``(B, C, ...)``
(dimension 1 is the "channel" dimension the parameters are stacked along). Conventions, for
every head:

* ``params`` has shape ``(B, head.param_channels(C), ...)`` and is laid out *parameter-major*:
  channel ``j * C + c`` holds parameter ``j`` of data channel ``c`` (e.g. for ``per_pixel_sigma``
  the first ``C`` channels are the means, the next ``C`` the log standard deviations).
* The returned distribution has ``batch_shape == (B,)`` and ``event_shape == (C, ...)``; its
  ``log_prob(x)`` has shape ``(B,)`` and is in **nats, summed over every data dimension** (over
  the observed ones when a ``mask`` is given: ``head(params, target=x, mask=m)``).
* *Continuous* heads (``data_kind == "unit"``, the historical name) model real-valued data in
  the range they declare, ``data_range``: ``"unit"`` (default: ``[0, 1]``, 8-bit images divided
  by 255), ``"signed"`` (``[-1, 1]``, ``2 x / 255 - 1``) or ``"real"`` (any finite numbers);
  their ``log_prob`` is the exact density of the data as given. *Discrete* heads
  (``data_kind == "intensity"``) model integer intensities ``0..255``.
  :meth:`LikelihoodHead.prepare_target` converts a ``uint8`` batch to whichever the head models.
* Only the quantities that need 8-bit data (the bin masses :meth:`ImageLikelihood.bin_log_mass`
  and :meth:`ImageLikelihood.bin_cdf`, hence the discretised ELBO, bin calibration and bits per
  dimension of the 8-bit data) need more than that: ``unit`` and ``signed`` data are 8-bit images
  by declaration, and ``real`` data must lie on the 8-bit grid ``k / 255`` in ``[0, 1]``, which
  :meth:`ImageLikelihood.intensities` checks (one-line :class:`LikelihoodInputError` otherwise).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.distributions import Distribution, Independent

from . import bins
from ._location import (
    DataRange,
    check_data_range,
    location,
    looks_squashed,
    warn_double_squash,
)
from .bins import NUM_LEVELS

DataKind = Literal["unit", "intensity"]
#: What ``torch.distributions`` accepts as a shape (``expand``, ``sample``).
ShapeLike = torch.Size | list[int] | tuple[int, ...]

__all__ = ["NUM_LEVELS", "DataKind", "DataRange", "ImageLikelihood", "LikelihoodHead",
           "LikelihoodInputError", "ShapeLike", "align_mask", "check_data", "effective_beta",
           "is_binary", "resolve_validate_args"]

#: How far (in intensity levels) ``real`` data may lie from the 8-bit grid ``k / 255`` and still
#: count as 8-bit data: float32 ``k / 255`` is within ``2e-5`` levels of ``k``.
GRID_TOLERANCE = 1e-3


class LikelihoodInputError(ValueError):
    """Raised when a head receives parameters or data of the wrong shape, dtype or range."""


def check_data(value: torch.Tensor, data_kind: DataKind, what: str = "x",
               data_range: DataRange = "unit") -> None:
    """Validate data for a head; raise :class:`LikelihoodInputError` naming ``what`` if invalid.

    ``unit``: a floating tensor with every value finite and, by ``data_range``, in ``[0, 1]``
    (``"unit"``), in ``[-1, 1]`` (``"signed"``) or anywhere (``"real"``).
    ``intensity``: an integer tensor (or a floating one holding whole numbers) in ``0..255``.
    """
    if not isinstance(value, torch.Tensor):
        raise LikelihoodInputError(f"{what} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() < 2:
        raise LikelihoodInputError(
            f"{what} must have shape (B, C, ...) with a batch and a channel dimension, "
            f"got shape {tuple(value.shape)}"
        )
    if value.numel() == 0:
        raise LikelihoodInputError(f"{what} is empty (shape {tuple(value.shape)})")
    if data_kind == "unit":
        if not value.is_floating_point():
            if data_range == "unit":
                raise LikelihoodInputError(
                    f"{what} must be floating point in [0, 1] for a continuous head, got dtype "
                    f"{value.dtype}; convert 8-bit images with x.float() / 255 "
                    "(or head.prepare_target(x))"
                )
            raise LikelihoodInputError(
                f"{what} must be floating point for a continuous head (data_range="
                f"{data_range!r}), got dtype {value.dtype}; convert 8-bit images with "
                "head.prepare_target(x)"
            )
        lo_t, hi_t = torch.aminmax(value.detach())
        lo, hi = float(lo_t), float(hi_t)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise LikelihoodInputError(f"{what} contains NaN or infinite values")
        if data_range == "unit" and (lo < 0.0 or hi > 1.0):
            raise LikelihoodInputError(
                f"{what} must lie in [0, 1] for a continuous head (8-bit images divided by "
                f"255), got values in [{lo:.4g}, {hi:.4g}]; for other data declare "
                "data_range='signed' ([-1, 1]) or 'real' (any real numbers)"
            )
        if data_range == "signed" and (lo < -1.0 or hi > 1.0):
            raise LikelihoodInputError(
                f"{what} must lie in [-1, 1] for a continuous head with data_range='signed' "
                f"(8-bit images as 2 x / 255 - 1), got values in [{lo:.4g}, {hi:.4g}]; "
                "declare data_range='real' for any real numbers"
            )
    else:
        if value.dtype == torch.bool or value.is_complex():
            raise LikelihoodInputError(f"{what} must hold integer intensities, got {value.dtype}")
        v = value.detach()
        if value.is_floating_point():
            if not bool(torch.isfinite(v).all()):
                raise LikelihoodInputError(f"{what} contains NaN or infinite values")
            if not bool((v == v.round()).all()):
                raise LikelihoodInputError(
                    f"{what} must hold integer intensities 0..255 for a discrete head, got "
                    "non-integer values; pass the uint8 image (not x / 255)"
                )
        lo_t, hi_t = torch.aminmax(v.to(torch.float32))
        if float(lo_t) < 0 or float(hi_t) > NUM_LEVELS - 1:
            raise LikelihoodInputError(
                f"{what} must hold integer intensities in 0..255 for a discrete head, got "
                f"values in [{float(lo_t):g}, {float(hi_t):g}]"
            )


def align_mask(mask: torch.Tensor, data_shape: Sequence[int], validate: bool = True,
               device: torch.device | None = None) -> torch.Tensor:
    """``mask`` as a ``bool`` tensor with one dimension per data dimension, broadcastable to data
    of shape ``data_shape`` (``(B, ...)``); ``True`` marks an observed entry.

    A mask with as many dimensions as the data broadcasts as in torch (e.g. ``(B, 1, H, W)``); a
    mask with fewer dimensions covers the *leading* ones and extends over the rest: ``(B,)`` per
    example, ``(B, T)`` per example and step of data ``(B, T, ...)``. ``bool`` masks are used as
    they are; other dtypes must hold 0 and 1 (checked when ``validate``).
    """
    shape = tuple(data_shape)
    if not isinstance(mask, torch.Tensor):
        raise LikelihoodInputError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    k = mask.dim()
    fits = 0 < k <= len(shape) and all(
        m in (1, d) for m, d in zip(mask.shape, shape[:k], strict=True))
    if not fits:
        raise LikelihoodInputError(
            f"mask has shape {tuple(mask.shape)} but the data has shape {shape}: pass a mask "
            "over the leading dimensions (B,) or (B, T) (extended over the rest), or one with "
            "a dimension per data dimension that broadcasts to the data"
        )
    if mask.dtype != torch.bool:
        if validate and not bool(((mask == 0) | (mask == 1)).all()):
            raise LikelihoodInputError("mask must hold True/False or 0/1 (1: observed)")
        mask = mask != 0
    if device is not None:
        mask = mask.to(device)
    return mask.reshape(*mask.shape, *([1] * (len(shape) - k)))


def is_binary(data: torch.Tensor) -> bool:
    """Whether every value is 0 or full intensity (255 for uint8 and integer data, 1.0 for
    floats in [0, 1])."""
    top = 1 if data.is_floating_point() else NUM_LEVELS - 1
    return bool(((data == 0) | (data == top)).all())


def resolve_validate_args(validate_args: bool | None) -> bool:
    """``validate_args`` as ``torch.distributions`` reads it: ``None`` means the global default
    (``Distribution.set_default_validate_args``; on unless ``python -O``)."""
    return Distribution._validate_args if validate_args is None else bool(validate_args)


def effective_beta(sigma: torch.Tensor) -> torch.Tensor:
    """The KL weight of the beta-VAE equivalent to a Gaussian decoder with standard deviation(s)
    ``sigma``: ``2 sigma^2`` for one shared sigma (the paper's Table 1 convention), and in
    general ``2 / mean(sigma^-2)`` over the elements of ``sigma`` (the beta-VAE with the same
    average weight on the squared error). ``sigma``: a tensor broadcastable to the data (its
    elements each stand for equally many data dimensions); returns a detached scalar tensor."""
    sigma = sigma.detach()
    if sigma.numel() == 1:
        return 2.0 * sigma.reshape(()) ** 2
    return 2.0 / sigma.pow(-2).mean()


#: ``data = offset + width * u`` for the data ``u`` on the [0, 1] scale of the 8-bit bins.
_UNIT_MAP: dict[str, tuple[float, float] | None] = {"unit": None, "real": None,
                                                    "signed": (-1.0, 2.0)}


def _takes_affine(method: Callable[..., torch.Tensor]) -> bool:
    try:
        return "offset" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


class ImageLikelihood(Independent):
    """A factorised distribution over whole data points: ``batch_shape (B,)``, event ``(C, ...)``.

    It is a :class:`torch.distributions.Independent` over an element-wise ``base`` distribution,
    so ``log_prob``, ``sample``, ``rsample`` (where the base has one), ``mean``, ``variance``,
    ``entropy``, ``support`` and ``expand`` behave exactly as in ``torch.distributions``. Added:

    * with ``validate_args`` (torch's meaning: ``None`` is the global default, on unless
      ``python -O``), values passed to :meth:`log_prob`, the element-wise methods and the bin
      methods are checked (shape, dtype, range) with a clear :class:`LikelihoodInputError`;
    * ``data_range`` (continuous heads): ``"unit"``, ``"signed"`` or ``"real"``, the range the
      data were declared in (what the checks accept, and where the 8-bit bins lie);
    * ``mask`` (``None``, or a ``bool`` tensor broadcastable to the data, :func:`align_mask`):
      entries where it is ``False`` contribute 0 to :meth:`log_prob` and
      :meth:`elementwise_log_prob` and are not checked (they may hold NaN padding); sampling,
      ``mean`` and the CDFs ignore it. :meth:`with_mask` gives a masked copy;
    * :meth:`elementwise_log_prob` (nats per data dimension), :meth:`elementwise_cdf` and
      :meth:`elementwise_icdf` (per data dimension; :meth:`cdf` and :meth:`icdf` of the whole
      data point raise ``NotImplementedError`` saying so); :meth:`entropy` is summed over the
      data dimensions like ``log_prob`` (the observed ones under a ``mask``), and ``mode`` is
      the base's (the most probable intensity for heads over intensities);
    * :meth:`bin_log_mass` and :meth:`bin_cdf`: the probability of each 8-bit intensity bin and
      the CDF at its upper edge (:mod:`.bins`), whatever the head (continuous densities are
      integrated over the bins, mapped to ``[-1, 1]`` for ``signed`` data; distributions over
      intensities give their own pmf and CDF), and :meth:`intensities` to turn data in this
      distribution's units into those intensities (refusing ``real`` data off the 8-bit grid);
    * ``sigma`` (the scale the head used, broadcastable to the data, or ``None``) and
      ``effective_beta`` (a detached scalar tensor, or ``None``): :func:`effective_beta` of
      ``sigma``, for Gaussian heads the KL weight of the equivalent beta-VAE.
    """

    def __init__(
        self,
        base: Distribution,
        data_kind: DataKind,
        sigma: torch.Tensor | None = None,
        validate_args: bool | None = None,
        data_range: DataRange = "unit",
        mask: torch.Tensor | None = None,
    ) -> None:
        ndims = len(base.batch_shape) - 1
        super().__init__(base, ndims, validate_args=validate_args)
        self.data_kind: DataKind = data_kind
        self.data_range: DataRange = check_data_range(data_range)
        self.sigma = sigma
        self.effective_beta = effective_beta(sigma) if sigma is not None else None
        self.mask: torch.Tensor | None = None
        if mask is not None:
            self.mask = align_mask(mask, self.batch_shape + self.event_shape,
                                   validate=bool(self._validate_args))

    def expand(self, batch_shape: ShapeLike,
               _instance: ImageLikelihood | None = None) -> ImageLikelihood:
        """The same distribution with ``batch_shape`` (``torch.distributions`` semantics: the base
        is expanded, nothing is copied); ``sigma`` and ``mask`` still broadcast to the data."""
        new = self._get_checked_instance(ImageLikelihood, _instance)
        super().expand(batch_shape, _instance=new)  # fills in ``new``
        new.data_kind = self.data_kind
        new.data_range = self.data_range
        new.sigma = self.sigma
        new.effective_beta = self.effective_beta
        new.mask = self.mask
        return new

    def with_mask(self, mask: torch.Tensor | None) -> ImageLikelihood:
        """A copy (sharing the parameters) that scores only the entries where ``mask`` is true
        (:func:`align_mask`: ``(B,)``, ``(B, T)`` or broadcastable to the data); ``None``
        removes the mask. The sigma stays what the head computed: for a data-dependent head
        (optimal sigma) pass the mask to the head instead, ``head(params, target=x, mask=m)``."""
        new = self.expand(self.batch_shape)
        new.mask = None if mask is None else align_mask(
            mask, self.batch_shape + self.event_shape, validate=bool(self._validate_args))
        return new

    # -- validation -----------------------------------------------------------------------------
    def _check_shape(self, value: torch.Tensor, what: str = "x") -> None:
        """``value`` must end in ``event_shape`` and broadcast with ``batch_shape``."""
        expected = self.batch_shape + self.event_shape
        ok = isinstance(value, torch.Tensor) and value.dim() >= len(self.event_shape)
        if ok and self.event_shape:
            ok = value.shape[-len(self.event_shape):] == self.event_shape
        if ok:
            ok = all(a == b or a == 1 or b == 1
                     for a, b in zip(reversed(value.shape), reversed(expected), strict=False))
        if not ok:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
            raise LikelihoodInputError(
                f"{what} has shape {shape} but this distribution is over data of shape "
                f"{tuple(expected)} (B, C, ...)"
            )

    def _validate_sample(self, value: torch.Tensor) -> None:
        """Shape (broadcasting as in torch), dtype and range of data in this head's units (the
        observed entries only, under a mask)."""
        self._check_shape(value)
        check_data(self._observed(value), self.data_kind, data_range=self.data_range)

    def _validate_intensities(self, intensities: torch.Tensor) -> None:
        self._check_shape(intensities, "intensities")
        check_data(intensities, "intensity", "intensities")

    def _observed(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` with the masked entries replaced by 0 (valid data for every head)."""
        if self.mask is None or not isinstance(value, torch.Tensor):
            return value
        return torch.where(self.mask, value, 0)

    # -- densities --------------------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each data point, shape ``(B,)``, nats summed over all dimensions
        (the observed ones under a ``mask``: a fully masked example gets 0)."""
        return self.elementwise_log_prob(value).flatten(-len(self.event_shape)).sum(-1)

    def elementwise_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each data dimension, shape ``(B, C, ...)``, nats (0 where masked)."""
        if self._validate_args:
            self._validate_sample(value)
        if self.mask is None:
            return self.base_dist.log_prob(value)
        log_prob = self.base_dist.log_prob(self._observed(value))
        return torch.where(self.mask, log_prob, 0)

    def elementwise_cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)`` per data dimension, shape ``(B, C, ...)``."""
        if self._validate_args:
            self._validate_sample(value)
        return self.base_dist.cdf(value)

    def elementwise_icdf(self, value: torch.Tensor) -> torch.Tensor:
        """The quantile of probability ``value`` per data dimension, shape ``(B, C, ...)``: the
        base's ``icdf`` (data units; for a head over intensities the smallest intensity whose
        CDF reaches ``value``, ``int64``). ``value`` lies in ``[0, 1]`` and broadcasts with the
        data (checked under ``validate_args``). ``NotImplementedError`` (saying why) where the
        base has no inverse CDF (Student-t)."""
        if self._validate_args:
            self._check_shape(value, "value")
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise LikelihoodInputError("value must be a floating tensor of probabilities "
                                           "in [0, 1]")
            if not bool(((value >= 0) & (value <= 1)).all()):
                raise LikelihoodInputError("value must hold probabilities in [0, 1]")
        return self.base_dist.icdf(value)

    # -- the torch.distributions contract for a whole data point ----------------------------------
    def entropy(self) -> torch.Tensor:
        """The entropy of each data point, shape ``(B,)``, nats summed over every data dimension
        like :meth:`log_prob` (over the observed ones under a ``mask``): differential entropy
        for continuous heads (data units), the entropy of the pmf for heads over intensities.
        ``NotImplementedError`` where the element-wise base has none."""
        entropy = self.base_dist.entropy()
        if self.mask is not None:
            entropy = torch.where(self.mask, entropy, 0)
        return entropy.flatten(-len(self.event_shape)).sum(-1)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """Not provided for a whole data point: raises ``NotImplementedError`` saying why (use
        :meth:`elementwise_cdf`)."""
        raise NotImplementedError(
            "cdf of a whole (C, ...) data point (the product of its per-dimension CDFs) is not "
            "provided: it underflows for images, and torch's Independent has none; use "
            "dist.elementwise_cdf(x) for P(X_d <= x_d) per dimension")

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """Not defined for a multivariate event: raises ``NotImplementedError`` saying why (use
        :meth:`elementwise_icdf`)."""
        raise NotImplementedError(
            "icdf of a (C, ...) data point is not defined (many points share a joint CDF "
            "value); use dist.elementwise_icdf(q) for the quantiles per dimension")

    # -- the 8-bit bins -------------------------------------------------------------------------
    def intensities(self, value: torch.Tensor) -> torch.Tensor:
        """The 8-bit intensities ``0..255`` of data in this distribution's units (float64):
        ``unit`` data times 255, ``signed`` data ``(x + 1) / 2`` times 255, rounded; ``real``
        data only if they lie on the 8-bit grid ``k / 255`` in ``[0, 1]``
        (:class:`LikelihoodInputError` otherwise: the 8-bit quantities do not exist for them).
        Intensities are returned unchanged."""
        if self.data_kind != "unit":
            return value
        if self.data_range == "signed":
            return bins.to_intensities(value.double().add(1.0).mul(0.5))
        if self.data_range == "real":
            self._check_on_grid(value)
        return bins.to_intensities(value)

    def _check_on_grid(self, value: torch.Tensor) -> None:
        v = self._observed(value).detach().double()
        levels = v * bins.MAX_LEVEL
        lo, hi = (float(t) for t in torch.aminmax(v))
        off = float((levels - levels.round()).abs().max()) if math.isfinite(lo + hi) else 1.0
        if not (lo >= 0.0 and hi <= 1.0 and off <= GRID_TOLERANCE):
            raise LikelihoodInputError(
                "8-bit quantities (bin masses, the discretised ELBO, bin calibration, bits/dim "
                "of 8-bit data) need 8-bit data, and these data (data_range='real', values in "
                f"[{lo:.4g}, {hi:.4g}]) are not on the grid k/255 in [0, 1]; declare "
                "data_range='unit' or 'signed' for 8-bit images, or use log_prob, the density "
                "of the data as given"
            )

    def _unit_cdf(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The base's CDF as a function of ``u`` on the [0, 1] scale of the bins."""
        affine = _UNIT_MAP[self.data_range]
        if affine is None:
            return self.base_dist.cdf
        offset, width = affine
        return lambda u: self.base_dist.cdf(offset + width * u)

    def bin_log_mass(self, intensities: torch.Tensor) -> torch.Tensor:
        """``log P(bin of intensity i)`` per data dimension, nats, shape ``(B, C, ...)``.

        ``intensities``: integers ``0..255`` (any dtype holding whole numbers), shape
        ``(B, C, ...)``. A continuous head's density is integrated over the bin
        ``[(i - 1/2)/255, (i + 1/2)/255]`` (edge bins open, :mod:`.bins`; for ``signed`` data
        its image under ``u -> 2 u - 1``), in float64, by the base's own ``bin_log_mass`` where
        it has one (accurate in the tails) and as a difference of its ``cdf`` otherwise
        (``NotImplementedError`` without a ``cdf``); a head over intensities gives its own
        ``log_prob`` (its dtype). The 256 masses sum to one.
        """
        if self._validate_args:
            self._validate_intensities(intensities)
        own = getattr(self.base_dist, "bin_log_mass", None)
        affine = _UNIT_MAP[self.data_range] if self.data_kind == "unit" else None
        if own is not None and affine is None:
            return own(intensities)
        if own is not None and affine is not None and _takes_affine(own):
            return own(intensities, offset=affine[0], width=affine[1])
        if self.data_kind == "intensity":
            return self.base_dist.log_prob(intensities)
        return bins.log_mass_from_cdf(self._unit_cdf(), intensities, _dtype(self.base_dist))

    def bin_cdf(self, intensities: torch.Tensor) -> torch.Tensor:
        """``P(X <= upper edge of the bin of intensity i)`` per data dimension, ``(B, C, ...)``.

        The CDF at ``(i + 1/2)/255`` for a continuous head (1 at 255; ``signed`` data: at
        ``2 (i + 1/2)/255 - 1``), evaluated in the base's dtype; a head over intensities gives its
        own ``cdf(i)``. ``P(X < bin i)`` is ``bin_cdf(i - 1)`` (0 for ``i = 0``).
        ``intensities`` as for :meth:`bin_log_mass`.
        """
        if self._validate_args:
            self._validate_intensities(intensities)
        own = getattr(self.base_dist, "bin_cdf", None)
        if own is not None and (self.data_kind != "unit" or _UNIT_MAP[self.data_range] is None):
            return own(intensities)
        if self.data_kind == "intensity":
            return self.base_dist.cdf(intensities)
        return bins.cdf_at_upper_edge(self._unit_cdf(), intensities, _dtype(self.base_dist))


def _dtype(dist: Distribution) -> torch.dtype:
    """The floating dtype of ``dist``'s parameters (that of its mean)."""
    try:
        return dist.mean.dtype
    except NotImplementedError:
        return torch.get_default_dtype()


#: Half-precision float dtypes (autocast outputs), which every likelihood computes in float32.
HALF_DTYPES = (torch.float16, torch.bfloat16)


def upcast(values: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (autocast outputs) -> float32; float32 and float64 stay as they are."""
    return values.float() if values.dtype in HALF_DTYPES else values


class LikelihoodHead(nn.Module):
    """Base class: maps decoder outputs ``params`` to a distribution over the data.

    Subclasses set the class attributes and implement :meth:`params_per_channel` and
    :meth:`distribution`. ``head(params, target=x, mask=m)`` validates the shapes and ``x`` and
    returns an :class:`ImageLikelihood`. ``target`` is needed only by heads whose parameters
    depend on the data (the optimal-sigma heads); others ignore it apart from validating it.
    ``mask`` (optional, :func:`align_mask`) marks the observed entries: the returned
    distribution's ``log_prob`` sums over them only, and data-dependent heads compute their
    statistics from them only (:meth:`masked_distribution`).
    """

    #: Registry name of the head (public API, used by the CLI).
    name: ClassVar[str] = ""
    #: ``"unit"``: continuous, real-valued data (see :attr:`data_range`); ``"intensity"``:
    #: integers 0..255.
    data_kind: ClassVar[DataKind] = "unit"
    #: The range of a continuous head's data: ``"unit"`` ([0, 1], 8-bit images / 255),
    #: ``"signed"`` ([-1, 1]) or ``"real"`` (anything finite); set per instance by the heads
    #: that take a ``data_range`` option. Ignored by heads over intensities.
    data_range: DataRange = "unit"
    #: Whether ``-log_prob`` of test data (with the head in eval mode) is a valid upper bound on
    #: the negative log-likelihood. ``False`` heads explain why in :attr:`invalid_bound_reason`.
    valid_bound: ClassVar[bool] = True
    invalid_bound_reason: ClassVar[str | None] = None
    #: Whether :meth:`forward` upcasts bf16/fp16 ``params`` (a bf16-mixed decoder's output) to
    #: float32 before :meth:`distribution`. A head whose distribution computes in float32 from
    #: half-precision params itself, piece by piece, sets it ``False`` and is spared the float32
    #: copy of its params (the 256-way categorical's 768 channels).
    upcasts_half_params: bool = True

    def __init__(self, validate_args: bool | None = None) -> None:
        super().__init__()
        #: ``torch.distributions``' ``validate_args`` for the data: ``True`` checks the target
        #: passed to ``head(params, target=x)`` and every value scored by the returned
        #: distribution (one reduction per call), ``False`` skips the checks (the trainer's
        #: batches are valid by construction), ``None`` follows torch's global default (on).
        self.validate_args: bool | None = validate_args
        self._squash_checked = False

    @property
    def validate(self) -> bool:
        """Removed: the data checks follow :attr:`validate_args` (torch's flag)."""
        raise AttributeError(f"{type(self).__name__}.validate was replaced by validate_args")

    @validate.setter
    def validate(self, value: bool) -> None:
        raise AttributeError(f"{type(self).__name__}.validate was replaced by validate_args "
                             f"(set head.validate_args = {value!r})")

    def validates(self) -> bool:
        """Whether data are checked now (:attr:`validate_args`, ``None`` read as torch does)."""
        return resolve_validate_args(self.validate_args)

    # -- what a model needs -------------------------------------------------------------------
    def params_per_channel(self) -> int:
        """Decoder output channels needed per data channel."""
        raise NotImplementedError

    def param_channels(self, channels: int) -> int:
        """Decoder output channels needed for data with ``channels`` channels."""
        if not isinstance(channels, int) or channels < 1:
            raise LikelihoodInputError(f"channels must be a positive int, got {channels!r}")
        return self.params_per_channel() * channels

    def layout_params(self, params: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """The head's layout from a decoder output whose ``k = params_per_channel()``
        parameters per data entry are stacked along ``dim`` instead of dimension 1.

        For data ``(B, T, D)`` (sequences of vectors) a decoder naturally ends in ``(B, T, k*D)``
        (``[means | log-sigmas]`` along the last axis); the head wants the parameters stacked
        along dimension 1, ``(B, k*T, D)``. ``params``: ``(..., k*N, ...)`` with the ``k``
        groups of ``N`` parameter-major along ``dim`` (group ``j``'s ``N`` entries together);
        returns ``(B, k*C, ...)`` for data of the shape ``params`` has with ``N`` at ``dim``.
        A one-parameter head (``k = 1``) returns ``params`` as it is.
        """
        k = self.params_per_channel()
        dim = dim % params.dim()
        if k == 1 or dim == 1:
            return params
        if params.shape[dim] % k:
            raise LikelihoodInputError(
                f"{self.name}: params has {params.shape[dim]} entries along dim {dim}, not a "
                f"multiple of the head's {k} parameters per data entry")
        grouped = params.unflatten(dim, (k, params.shape[dim] // k))  # (..., k, N, ...)
        return grouped.movedim(dim, 1).flatten(1, 2)                  # (B, k*C, ...)

    def prepare_target(self, images: torch.Tensor) -> torch.Tensor:
        """Convert a ``uint8`` batch ``(B, C, ...)`` to the data this head models.

        Continuous heads get ``float32``: ``x / 255`` in ``[0, 1]`` (``data_range`` ``unit``
        and ``real``), ``2 x / 255 - 1`` in ``[-1, 1]`` (``signed``); discrete heads the integer
        intensities (``int64``).
        """
        if images.dtype != torch.uint8:
            raise LikelihoodInputError(f"prepare_target expects uint8 images, got {images.dtype}")
        if self.data_kind == "unit":
            unit = images.to(torch.float32).div_(NUM_LEVELS - 1)
            return unit.mul_(2.0).sub_(1.0) if self.data_range == "signed" else unit
        return images.long()

    def from_unit_interval(self, images: torch.Tensor) -> torch.Tensor:
        """Map float images in ``[0, 1]`` (``x / 255``) to the data this head models: unchanged
        (``unit``, ``real``), ``2 x - 1`` (``signed``), or ``round(255 x)`` (``int64``
        intensities for discrete heads). The float counterpart of :meth:`prepare_target`."""
        if self.data_kind == "intensity":
            return torch.round(images * (NUM_LEVELS - 1)).long()
        return images * 2.0 - 1.0 if self.data_range == "signed" else images

    def to_unit_interval(self, x: torch.Tensor) -> torch.Tensor:
        """Map data or a mean of this head's kind to floats in ``[0, 1]`` (for image grids):
        intensities / 255, ``signed`` data ``(x + 1) / 2``, clamped."""
        x = x.float()
        if self.data_kind == "intensity":
            x = x / (NUM_LEVELS - 1)
        elif self.data_range == "signed":
            x = (x + 1.0) * 0.5
        return x.clamp(0.0, 1.0)

    # -- the distribution ---------------------------------------------------------------------
    def forward(
        self, params: torch.Tensor, target: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> ImageLikelihood:
        """``p(x | params)``; ``target`` (the data batch) is needed by data-dependent heads;
        ``mask`` marks the observed entries of the data (:func:`align_mask`)."""
        self._check_params(params, target)
        if self.upcasts_half_params:
            params = upcast(params)  # likelihoods are always evaluated in float32
        if mask is None:
            if target is not None and self.validates():
                check_data(target, self.data_kind, "target", self.data_range)
            return self.distribution(params, target)
        mask = align_mask(mask, self._data_shape(params, target), validate=self.validates(),
                          device=params.device)
        if target is not None and self.validates():
            observed = torch.where(mask, target, 0) if isinstance(target, torch.Tensor) else target
            check_data(observed, self.data_kind, "target", self.data_range)
        dist = self.masked_distribution(params, target, mask)
        dist.mask = mask
        return dist

    def distribution(
        self, params: torch.Tensor, target: torch.Tensor | None
    ) -> ImageLikelihood:
        raise NotImplementedError

    def masked_distribution(
        self, params: torch.Tensor, target: torch.Tensor | None, mask: torch.Tensor
    ) -> ImageLikelihood:
        """:meth:`distribution` when a mask is given (``mask``: ``bool``, one dimension per data
        dimension, broadcastable to the data). :meth:`forward` attaches the mask to the result.

        The default suits heads whose parameters do not depend on the data: the masked entries
        of ``target`` are replaced by 0 and :meth:`distribution` is called. Heads that compute
        statistics of the data (optimal sigma) override it to use the observed entries only.
        """
        filled = None if target is None else torch.where(mask, target, 0)
        return self.distribution(params, filled)

    def _data_shape(self, params: torch.Tensor, target: torch.Tensor | None) -> torch.Size:
        if target is not None:
            return target.shape
        k = self.params_per_channel()
        return torch.Size((params.shape[0], params.shape[1] // k, *params.shape[2:]))

    def mean_location(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's ``mean_activation`` applied to raw decoder outputs. The first time it sees
        outputs that already all lie in (0, 1), as a sigmoid's do, a sigmoid head warns once
        (:class:`~sigmavae.likelihoods._location.DoubleSquashWarning`): the decoder probably
        ends in its own sigmoid and wants ``mean_activation='identity'``. Checked only while
        the head validates its data (``validate_args``), so the trainer's steps never sync."""
        activation = getattr(self, "mean_activation", "identity")
        if (activation == "sigmoid" and not getattr(self, "_squash_checked", True)
                and self.validates()):
            self._squash_checked = True
            if looks_squashed(raw):
                warn_double_squash(self.name)
        return location(raw, activation)

    def predict_mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mean of ``p(x|z)`` (in the head's data units), without data or state changes."""
        self._check_params(params, None)
        return self.distribution(upcast(params), None).mean

    def split_params(self, params: torch.Tensor) -> torch.Tensor:
        """View ``(B, k*C, *spatial)`` as ``(B, k, C, *spatial)`` (parameter-major layout)."""
        k = self.params_per_channel()
        return params.unflatten(1, (k, params.shape[1] // k))

    def _check_params(self, params: torch.Tensor, target: torch.Tensor | None) -> None:
        if not isinstance(params, torch.Tensor) or not params.is_floating_point():
            raise LikelihoodInputError(
                f"{self.name}: params must be a floating tensor of shape (B, P, ...), got "
                f"{getattr(params, 'dtype', type(params).__name__)}"
            )
        if params.dim() < 2:
            raise LikelihoodInputError(
                f"{self.name}: params must have shape (B, P, ...), got {tuple(params.shape)}"
            )
        k = self.params_per_channel()
        if params.shape[1] % k != 0:
            raise LikelihoodInputError(
                f"{self.name}: params has {params.shape[1]} channels, which is not a multiple "
                f"of {k} (= param_channels(1)); size the decoder's last layer with "
                "head.param_channels(C)"
            )
        if target is not None:
            expected = (params.shape[0], self.param_channels(target.shape[1]), *target.shape[2:])
            if target.dim() != params.dim() or tuple(params.shape) != expected:
                raise LikelihoodInputError(
                    f"{self.name}: params shape {tuple(params.shape)} does not match target shape "
                    f"{tuple(target.shape)}; expected params of shape {expected} "
                    f"(param_channels({target.shape[1]}) = {expected[1]})"
                )

    # -- reporting ----------------------------------------------------------------------------
    #: Whether the head's parameters depend on the data being scored (per-image optimal sigma):
    #: then test metrics that use ``p(x|z)`` (bounds, calibration) are flattered by the test data.
    fits_test_data: ClassVar[bool] = False

    def bound_validity(self, data: torch.Tensor | None = None) -> tuple[bool, str | None]:
        """Whether ``-log_prob`` of ``data`` (eval mode) is a valid bound on ``-log p(x)``, and
        if not, why (this head's own reason). ``data``: the evaluated batch or set, for heads
        whose validity depends on it (Bernoulli is exact on binary data). A continuous head's
        density is a valid bound of the density of its data whatever their range (``unit``,
        ``signed``, ``real``); under a mask, of the density of the observed entries."""
        if self.valid_bound:
            return True, None
        return False, self.invalid_bound_reason

    def divergence_hint(self) -> str | None:
        """The likely cause when training with this head keeps producing non-finite losses, and
        what to do (``None``: nothing specific to the head)."""
        return None

    @property
    def train_bound_bias(self) -> str | None:
        """Why ``-log_prob`` of a *training* batch in training mode is a biased bound, or
        ``None`` when it is not (heads whose scale is fitted to the batch itself, App. C)."""
        return None

    @property
    def sigma(self) -> torch.Tensor | None:
        """A scalar summary of the head's scale in its current state (``None`` if it has none)."""
        return None

    def scalar_sigma(self) -> float:
        """:attr:`sigma` as a Python float, for logs and prints (a head whose ``sigma`` is
        ``None`` raises ``ValueError`` naming the head: it has no scale to show)."""
        sigma = self.sigma
        if sigma is None:
            raise ValueError(f"{self.name}: this head has no sigma (only the Gaussian-family, "
                             "Student-t and discretised heads have a scale)")
        return float(sigma)

    @contextlib.contextmanager
    def running_frozen(self) -> Iterator[LikelihoodHead]:
        """Within this block, training-mode calls leave the head's running estimates as they
        are (the optimal-sigma heads' running variance, also inside a discretised head with
        ``scale="optimal"``); sigma is still the batch's MSE, as in any training call.

        Every training-mode call updates the running sigma that evaluation uses, so scoring
        the same batch twice in one step (a diagnostic, a second loss on the same data) would
        count it twice::

            dist = head(params, target=x)                 # the step's call: updates it once
            with head.running_frozen():
                again = head(params.detach(), target=x)   # leaves it alone

        A head without running estimates is unaffected. Nesting is allowed."""
        # (duck-typed: the optimal-sigma heads, which import this module, carry the flag)
        holders: list[Any] = [m for m in self.modules() if hasattr(m, "running_updates")]
        before = [m.running_updates for m in holders]
        for m in holders:
            m.running_updates = False
        try:
            yield self
        finally:
            for m, was in zip(holders, before, strict=True):
                m.running_updates = was

    @property
    def effective_beta(self) -> torch.Tensor | None:
        """``2 sigma^2``, the KL weight of the equivalent beta-VAE (``None`` without a sigma;
        :func:`effective_beta`)."""
        sigma = self.sigma
        return None if sigma is None else effective_beta(sigma)

    def extra_repr(self) -> str:
        declared = (f", data_range={self.data_range!r}"
                    if self.data_kind == "unit" and self.data_range != "unit" else "")
        return f"name={self.name!r}, data_kind={self.data_kind!r}{declared}"
