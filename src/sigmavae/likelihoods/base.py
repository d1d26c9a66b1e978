"""The likelihood-head abstraction shared by every decoder distribution.

A *head* turns the raw output of a decoder network into a distribution ``p(x|z)`` over a batch of
data (images ``(B, C, H, W)``, or any ``(B, C, *spatial)``). Conventions, for every head:

* ``params`` has shape ``(B, head.param_channels(C), *spatial)`` and is laid out *parameter-major*:
  channel ``j * C + c`` holds parameter ``j`` of data channel ``c`` (e.g. for ``per_pixel_sigma``
  the first ``C`` channels are the means, the next ``C`` the log standard deviations).
* The returned distribution has ``batch_shape == (B,)`` and ``event_shape == (C, *spatial)``; its
  ``log_prob(x)`` has shape ``(B,)`` and is in **nats, summed over every data dimension**.
* *Continuous* heads (``data_kind == "unit"``) model floats in ``[0, 1]`` (8-bit images divided by
  255); *discrete* heads (``data_kind == "intensity"``) model integer intensities ``0..255``.
  :meth:`LikelihoodHead.prepare_target` converts a ``uint8`` batch to whichever the head models.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.distributions import Distribution, Independent

from . import bins
from .bins import NUM_LEVELS

DataKind = Literal["unit", "intensity"]
#: What ``torch.distributions`` accepts as a shape (``expand``, ``sample``).
ShapeLike = torch.Size | list[int] | tuple[int, ...]

__all__ = ["NUM_LEVELS", "DataKind", "ImageLikelihood", "LikelihoodHead", "LikelihoodInputError",
           "ShapeLike", "check_data", "effective_beta", "is_binary", "resolve_validate_args"]


class LikelihoodInputError(ValueError):
    """Raised when a head receives parameters or data of the wrong shape, dtype or range."""


def check_data(value: torch.Tensor, data_kind: DataKind, what: str = "x") -> None:
    """Validate data for a head; raise :class:`LikelihoodInputError` naming ``what`` if invalid.

    ``unit``: a floating tensor with every value finite and in ``[0, 1]``.
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
            raise LikelihoodInputError(
                f"{what} must be floating point in [0, 1] for a continuous head, got dtype "
                f"{value.dtype}; convert 8-bit images with x.float() / 255 "
                "(or head.prepare_target(x))"
            )
        lo_t, hi_t = torch.aminmax(value.detach())
        lo, hi = float(lo_t), float(hi_t)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise LikelihoodInputError(f"{what} contains NaN or infinite values")
        if lo < 0.0 or hi > 1.0:
            raise LikelihoodInputError(
                f"{what} must lie in [0, 1] for a continuous head (8-bit images divided by "
                f"255), got values in [{lo:.4g}, {hi:.4g}]"
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


class ImageLikelihood(Independent):
    """A factorised distribution over whole data points: ``batch_shape (B,)``, event ``(C, ...)``.

    It is a :class:`torch.distributions.Independent` over an element-wise ``base`` distribution,
    so ``log_prob``, ``sample``, ``rsample`` (where the base has one), ``mean``, ``variance``,
    ``entropy``, ``support`` and ``expand`` behave exactly as in ``torch.distributions``. Added:

    * with ``validate_args`` (torch's meaning: ``None`` is the global default, on unless
      ``python -O``), values passed to :meth:`log_prob`, the element-wise methods and the bin
      methods are checked (shape, dtype, range) with a clear :class:`LikelihoodInputError`;
    * :meth:`elementwise_log_prob` (nats per data dimension) and :meth:`elementwise_cdf`;
    * :meth:`bin_log_mass` and :meth:`bin_cdf`: the probability of each 8-bit intensity bin and
      the CDF at its upper edge (:mod:`.bins`), whatever the head (continuous densities are
      integrated over the bins; distributions over intensities give their own pmf and CDF), and
      :meth:`intensities` to turn data in this distribution's units into those intensities;
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
    ) -> None:
        ndims = len(base.batch_shape) - 1
        super().__init__(base, ndims, validate_args=validate_args)
        self.data_kind: DataKind = data_kind
        self.sigma = sigma
        self.effective_beta = effective_beta(sigma) if sigma is not None else None

    def expand(self, batch_shape: ShapeLike,
               _instance: ImageLikelihood | None = None) -> ImageLikelihood:
        """The same distribution with ``batch_shape`` (``torch.distributions`` semantics: the base
        is expanded, nothing is copied); ``sigma`` still broadcasts to the data."""
        new = self._get_checked_instance(ImageLikelihood, _instance)
        super().expand(batch_shape, _instance=new)  # fills in ``new``
        new.data_kind = self.data_kind
        new.sigma = self.sigma
        new.effective_beta = self.effective_beta
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
        """Shape (broadcasting as in torch), dtype and range of data in this head's units."""
        self._check_shape(value)
        check_data(value, self.data_kind)

    def _validate_intensities(self, intensities: torch.Tensor) -> None:
        self._check_shape(intensities, "intensities")
        check_data(intensities, "intensity", "intensities")

    # -- densities --------------------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each data point, shape ``(B,)``, nats summed over all dimensions."""
        return self.elementwise_log_prob(value).flatten(-len(self.event_shape)).sum(-1)

    def elementwise_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each data dimension, shape ``(B, C, ...)``, nats."""
        if self._validate_args:
            self._validate_sample(value)
        return self.base_dist.log_prob(value)

    def elementwise_cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)`` per data dimension, shape ``(B, C, ...)``."""
        if self._validate_args:
            self._validate_sample(value)
        return self.base_dist.cdf(value)

    # -- the 8-bit bins -------------------------------------------------------------------------
    def intensities(self, value: torch.Tensor) -> torch.Tensor:
        """The 8-bit intensities ``0..255`` of data in this distribution's units: continuous heads'
        ``[0, 1]`` floats times 255, rounded (float64); intensities unchanged."""
        return bins.to_intensities(value) if self.data_kind == "unit" else value

    def bin_log_mass(self, intensities: torch.Tensor) -> torch.Tensor:
        """``log P(bin of intensity i)`` per data dimension, nats, shape ``(B, C, ...)``.

        ``intensities``: integers ``0..255`` (any dtype holding whole numbers), shape
        ``(B, C, ...)``. A continuous head's density is integrated over the bin
        ``[(i - 1/2)/255, (i + 1/2)/255]`` (edge bins open, :mod:`.bins`), in float64, by the
        base's own ``bin_log_mass`` where it has one (accurate in the tails) and as a
        difference of its ``cdf`` otherwise (``NotImplementedError`` without a ``cdf``); a head
        over intensities gives its own ``log_prob`` (its dtype). The 256 masses sum to one.
        """
        if self._validate_args:
            self._validate_intensities(intensities)
        own = getattr(self.base_dist, "bin_log_mass", None)
        if own is not None:
            return own(intensities)
        if self.data_kind == "intensity":
            return self.base_dist.log_prob(intensities)
        return bins.log_mass_from_cdf(self.base_dist.cdf, intensities, _dtype(self.base_dist))

    def bin_cdf(self, intensities: torch.Tensor) -> torch.Tensor:
        """``P(X <= upper edge of the bin of intensity i)`` per data dimension, ``(B, C, ...)``.

        The CDF at ``(i + 1/2)/255`` for a continuous head (1 at 255), evaluated in the base's
        dtype; a head over intensities gives its own ``cdf(i)``. ``P(X < bin i)`` is
        ``bin_cdf(i - 1)`` (0 for ``i = 0``). ``intensities`` as for :meth:`bin_log_mass`.
        """
        if self._validate_args:
            self._validate_intensities(intensities)
        own = getattr(self.base_dist, "bin_cdf", None)
        if own is not None:
            return own(intensities)
        if self.data_kind == "intensity":
            return self.base_dist.cdf(intensities)
        return bins.cdf_at_upper_edge(self.base_dist.cdf, intensities, _dtype(self.base_dist))


def _dtype(dist: Distribution) -> torch.dtype:
    """The floating dtype of ``dist``'s parameters (that of its mean)."""
    try:
        return dist.mean.dtype
    except NotImplementedError:
        return torch.get_default_dtype()


class LikelihoodHead(nn.Module):
    """Base class: maps decoder outputs ``params`` to a distribution over the data.

    Subclasses set the class attributes and implement :meth:`params_per_channel` and
    :meth:`distribution`. ``head(params, target=x)`` validates the shapes and ``x`` and returns
    an :class:`ImageLikelihood`. ``target`` is needed only by heads whose parameters depend on the
    data (the optimal-sigma heads); others ignore it apart from validating it.
    """

    #: Registry name of the head (public API, used by the CLI).
    name: ClassVar[str] = ""
    #: ``"unit"``: floats in [0, 1]; ``"intensity"``: integers 0..255.
    data_kind: ClassVar[DataKind] = "unit"
    #: Whether ``-log_prob`` of test data (with the head in eval mode) is a valid upper bound on
    #: the negative log-likelihood. ``False`` heads explain why in :attr:`invalid_bound_reason`.
    valid_bound: ClassVar[bool] = True
    invalid_bound_reason: ClassVar[str | None] = None

    def __init__(self, validate_args: bool | None = None) -> None:
        super().__init__()
        #: ``torch.distributions``' ``validate_args`` for the data: ``True`` checks the target
        #: passed to ``head(params, target=x)`` and every value scored by the returned
        #: distribution (one reduction per call), ``False`` skips the checks (the trainer's
        #: batches are valid by construction), ``None`` follows torch's global default (on).
        self.validate_args: bool | None = validate_args

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

    def prepare_target(self, images: torch.Tensor) -> torch.Tensor:
        """Convert a ``uint8`` batch ``(B, C, ...)`` to the data this head models.

        Continuous heads get ``float32`` in ``[0, 1]`` (``x / 255``), discrete heads the integer
        intensities (``int64``).
        """
        if images.dtype != torch.uint8:
            raise LikelihoodInputError(f"prepare_target expects uint8 images, got {images.dtype}")
        if self.data_kind == "unit":
            return images.to(torch.float32).div_(NUM_LEVELS - 1)
        return images.long()

    def to_unit_interval(self, x: torch.Tensor) -> torch.Tensor:
        """Map data or a mean of this head's kind to floats in ``[0, 1]`` (for image grids)."""
        x = x.float()
        if self.data_kind == "intensity":
            x = x / (NUM_LEVELS - 1)
        return x.clamp(0.0, 1.0)

    # -- the distribution ---------------------------------------------------------------------
    def forward(
        self, params: torch.Tensor, target: torch.Tensor | None = None
    ) -> ImageLikelihood:
        """``p(x | params)``; ``target`` (the data batch) is needed by data-dependent heads."""
        self._check_params(params, target)
        if params.dtype in (torch.float16, torch.bfloat16):
            params = params.float()  # likelihoods are always evaluated in float32
        if target is not None and self.validates():
            check_data(target, self.data_kind, "target")
        return self.distribution(params, target)

    def distribution(
        self, params: torch.Tensor, target: torch.Tensor | None
    ) -> ImageLikelihood:
        raise NotImplementedError

    def predict_mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mean of ``p(x|z)`` (in the head's data units), without data or state changes."""
        self._check_params(params, None)
        if params.dtype in (torch.float16, torch.bfloat16):
            params = params.float()
        return self.distribution(params, None).mean

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
        whose validity depends on it (Bernoulli is exact on binary data)."""
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

    @property
    def effective_beta(self) -> torch.Tensor | None:
        """``2 sigma^2``, the KL weight of the equivalent beta-VAE (``None`` without a sigma;
        :func:`effective_beta`)."""
        sigma = self.sigma
        return None if sigma is None else effective_beta(sigma)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, data_kind={self.data_kind!r}"
