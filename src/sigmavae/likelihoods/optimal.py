"""The optimal sigma-VAE: the decoder variance computed analytically (paper, Sec. 4 and App. C).

Given the decoder means, the maximum-likelihood variance is the mean squared error,
``sigma^2 = mean((x - mu)^2)`` over the *scope*'s axes:

* ``shared`` (``optimal_sigma``): one variance for the whole batch (all images and dimensions);
* ``per_image`` (``optimal_sigma_per_image``): one variance per image, computed from that image
  itself; because the test image sets its own variance this is **not** a valid bound;
* ``per_dim`` (``optimal_sigma_per_dim``): one variance per data dimension ``(C, H, W)``,
  averaged over the batch; ``shared_dims`` names data dimensions it is shared over as well:
  ``shared_dims=(1,)`` gives one sigma per feature of ``(B, T, D)`` sequences (shared over time,
  so the length may change from batch to batch), ``shared_dims=(-2, -1)`` one per channel of
  ``(B, C, H, W)`` images.

In training mode the current batch's MSE is used (the paper), or, with ``train_sigma="running"``,
the running estimate from previous batches (App. C: removes the bias of fitting sigma and
evaluating the bound on the same batch). Every training call updates an exponential running
average (``decay``), which eval mode uses, so test bounds use a sigma fitted on training data;
calls inside ``with head.running_frozen():`` leave it alone (a batch scored twice in one step).
Under torch.distributed the squared errors and counts are all-reduced first, so N processes
compute exactly the sigma of one process holding the concatenated batch.

Masks (``head(params, target=x, mask=m)``, :func:`~sigmavae.likelihoods.base.align_mask`): the
MSE is taken over the observed entries only (sums of squared errors and counts of observed entries,
both all-reduced under torch.distributed), so padding and missing values neither enter sigma nor
the running estimate; an example with nothing observed contributes nothing (``log_prob`` 0, and
per image it is left out of the running summary); a dimension that no example observes keeps its
running value (``per_dim``; on the very first batch it starts from that batch's shared MSE). The
function :func:`masked_variance` is this statistic on its own.

Sigma is **exact** by default: ``sigma = sqrt(MSE)``, the maximum-likelihood value, with only a
hard floor ``min_sigma`` so that a perfect reconstruction (MSE = 0) does not give an infinite
density. By default the floor is the standard deviation of 8-bit rounding noise in the units of the
declared data, :data:`QUANTIZATION_SIGMA` = 1 / (255 sqrt(12)) ~ 0.00113 for ``data_range="unit"``
(twice that for ``"signed"``), and :data:`REAL_MIN_SIGMA` = 1e-6 for ``"real"`` data. The floor
never binds at realistic errors (the paper's SVHN sigma is 0.055). The paper clips only the
per-pixel variance and finds clipping unnecessary for a shared sigma; the public sigma-VAE code
nevertheless soft-clips ``log sigma`` at -6 (Chua et al.), which makes sigma larger than the MSE
(by 4.5% at 0.055, 25% at 0.01). Pass ``min_log_sigma="public_code"`` (or any number) for that
behaviour.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch

from ._location import (
    ContinuousMeanActivation,
    DataRange,
    check_data_range,
    location,
    resolve_mean_activation,
)
from .base import ImageLikelihood, LikelihoodHead, LikelihoodInputError, upcast
from .distributed import all_reduce_sum, is_distributed
from .gaussian import BinnedNormal
from .registry import register
from .softclip import softclip

#: Standard deviation of 8-bit rounding noise on the [0, 1] scale, ``1 / (255 sqrt(12))``: the
#: default hard floor on an analytic sigma (an error smaller than rounding is not measurable).
QUANTIZATION_SIGMA = 1.0 / (255.0 * math.sqrt(12.0))
#: The default floor on an analytic sigma for ``data_range="real"`` data (no 8-bit rounding).
REAL_MIN_SIGMA = 1e-6
#: The default ``min_sigma`` for each data range: 8-bit rounding noise in the data's units.
DEFAULT_MIN_SIGMA: dict[str, float] = {"unit": QUANTIZATION_SIGMA, "signed": 2 * QUANTIZATION_SIGMA,
                                       "real": REAL_MIN_SIGMA}


def resolve_min_sigma(min_sigma: float | None, data_range: DataRange) -> float:
    """The hard floor on an analytic sigma: ``min_sigma`` as given (a positive number, data
    units), or for ``None`` the default of the declared data, :data:`DEFAULT_MIN_SIGMA`
    ``[data_range]`` (8-bit rounding noise in the data's units; ``1e-6`` for ``real`` data)."""
    if min_sigma is None:
        return DEFAULT_MIN_SIGMA[check_data_range(data_range)]
    if (isinstance(min_sigma, bool) or not isinstance(min_sigma, int | float)
            or not 0.0 < min_sigma < math.inf):
        raise ValueError(f"optimal sigma: min_sigma must be a positive number or None (the "
                         f"default of data_range), got {min_sigma!r}")
    return float(min_sigma)

#: The soft clip of the public sigma-VAE code, ``softclip(log_sigma, -6)``.
PUBLIC_CODE_MIN_LOG_SIGMA = -6.0

Scope = Literal["shared", "per_image", "per_dim"]
SCOPES: tuple[str, ...] = ("shared", "per_image", "per_dim")
TrainSigma = Literal["batch", "running"]


def check_shared_dims(shared_dims: Sequence[int], scope: str = "per_dim") -> tuple[int, ...]:
    """``shared_dims`` as a tuple of ints (validated; only the ``per_dim`` scope has them)."""
    if isinstance(shared_dims, int | str) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d != 0 for d in shared_dims):
        raise ValueError("optimal sigma: shared_dims must be a list of data dimensions (1 = the "
                         "first after the batch, negative from the end; 0 is the batch), got "
                         f"{shared_dims!r}")
    if shared_dims and scope != "per_dim":
        raise ValueError(f"optimal sigma: shared_dims is an option of scope 'per_dim' (one sigma "
                         f"per data dimension); scope {scope!r} has none")
    return tuple(shared_dims)


def per_dim_axes(ndim: int, shared_dims: Sequence[int] = ()) -> tuple[int, ...]:
    """The axes a ``per_dim`` variance of ``ndim``-dimensional ``(B, ...)`` data averages over:
    the batch and ``shared_dims`` (resolved against ``ndim``)."""
    axes = {0}
    for d in shared_dims:
        axis = d if d > 0 else ndim + d
        if not 1 <= axis < ndim:
            raise LikelihoodInputError(
                f"optimal sigma: shared_dims {tuple(shared_dims)} names dimension {d}, but the "
                f"data have {ndim - 1} data dimensions after the batch")
        axes.add(axis)
    return tuple(sorted(axes))


def masked_variance(
    mean: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
    scope: Scope = "shared", shared_dims: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The maximum-likelihood variance of ``target`` around ``mean`` over the scope's axes: the
    mean squared error, over the observed entries only when ``mask`` is given.

    ``mean`` and ``target``: ``(B, C, ...)``; ``mask``: ``bool``, one dimension per data
    dimension, broadcastable to them (:func:`~sigmavae.likelihoods.base.align_mask`); masked
    entries of ``target`` may hold anything, NaN included. ``shared`` and ``per_dim`` sum the
    squared errors and the counts over the batch and, under torch.distributed, all-reduce both,
    so N processes get the variance of one process with the concatenated batch; ``per_image``
    is each example's own.

    ``shared_dims`` (``per_dim`` only): data dimensions averaged over as well, kept with size 1.

    Returns ``(var, observed)``: ``var`` broadcastable to the data (``()``, ``(B, 1, ...)`` or
    ``(C, ...)``, with 1 at ``shared_dims``; gradients flow through it), and ``observed``
    (``None`` without a mask), a ``bool`` tensor of ``var``'s shape, false where nothing was
    observed; ``var`` there is the batch's shared masked MSE (a finite stand-in: those entries
    are masked out).
    """
    if mask is None:
        squared = (target - mean).pow(2)
        if scope == "per_image":
            return squared.flatten(1).mean(1).view(-1, *([1] * (squared.dim() - 1))), None
        if scope == "shared":
            total, count = squared.sum(), squared.numel()
        else:
            axes = per_dim_axes(squared.dim(), shared_dims)
            total = squared.sum(axes, keepdim=True)[0]  # (C, ...), 1 at the shared axes
            count = math.prod([squared.shape[a] for a in axes])  # (a list: compile traces it)
        if is_distributed():
            count_t = all_reduce_sum(torch.tensor(float(count), device=squared.device))
            return all_reduce_sum(total) / count_t, None
        return total / count, None
    # ``where`` before squaring: the masked entries (NaN padding) get neither value nor gradient.
    sq = torch.where(mask, target - mean, 0).pow(2)
    weight = mask.expand_as(sq).to(sq.dtype)
    if scope == "per_image":
        sums, counts = sq.flatten(1).sum(1), weight.flatten(1).sum(1)
        fill = sums.sum() / counts.sum().clamp_min(1.0)
        shape = (-1, *([1] * (sq.dim() - 1)))
        seen = counts > 0
        var = torch.where(seen, sums / counts.clamp_min(1.0), fill)
        return var.view(shape), seen.view(shape)
    if scope == "shared":
        sums, counts = sq.sum(), weight.sum()
    else:
        axes = per_dim_axes(sq.dim(), shared_dims)
        sums, counts = sq.sum(axes, keepdim=True)[0], weight.sum(axes, keepdim=True)[0]
    sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
    seen = counts > 0
    var = sums / counts.clamp_min(1.0)
    if scope == "per_dim":
        var = torch.where(seen, var, sums.sum() / counts.sum().clamp_min(1.0))
    return var, seen


class OptimalSigmaGaussian(LikelihoodHead):
    """Gaussian decoder whose sigma is the analytic maximum-likelihood estimate (the MSE).

    Args:
        scope: ``"shared"``, ``"per_image"`` or ``"per_dim"`` (see the module docstring).
        decay: running-average decay per training batch, in ``[0, 1)``; the first batch
            initialises the average.
        train_sigma: ``"batch"`` (paper) or ``"running"`` (App. C bias fix).
        shared_dims: ``per_dim`` only: data dimensions (1 = the first after the batch,
            negative from the end) the per-dimension sigma is shared over as well, e.g.
            ``(1,)``: one sigma per feature of ``(B, T, D)`` sequences of any length.
        min_log_sigma: ``None`` (default: sigma is the exact MLE), or a soft lower bound on
            ``log sigma`` (Chua et al.'s soft clip); ``"public_code"`` = ``-6``, the behaviour
            of the public sigma-VAE code.
        min_sigma: hard floor on sigma, > 0, in data units; ``None`` (default) resolves to
            :data:`DEFAULT_MIN_SIGMA` of ``data_range`` (:func:`resolve_min_sigma`:
            :data:`QUANTIZATION_SIGMA` for ``unit``, twice that for ``signed``,
            :data:`REAL_MIN_SIGMA` for ``real``), kept as ``head.min_sigma``. It matters only
            for near-perfect reconstructions.
        mean_activation: ``"sigmoid"``, ``"tanh"`` or ``"identity"`` on the decoder output; by
            default the one of ``data_range`` (``sigmoid`` for ``unit``).
        data_range: ``"unit"`` ([0, 1], default), ``"signed"`` ([-1, 1]) or ``"real"``.
    """

    data_kind = "unit"
    _NAMES: ClassVar[dict[str, str]] = {
        "shared": "optimal_sigma",
        "per_image": "optimal_sigma_per_image",
        "per_dim": "optimal_sigma_per_dim",
    }

    def __init__(
        self,
        scope: Scope = "shared",
        decay: float = 0.9,
        train_sigma: TrainSigma = "batch",
        min_log_sigma: float | Literal["public_code"] | None = None,
        min_sigma: float | None = None,
        mean_activation: ContinuousMeanActivation | None = None,
        validate_args: bool | None = None,
        data_range: DataRange = "unit",
        shared_dims: Sequence[int] = (),
    ) -> None:
        super().__init__(validate_args=validate_args)
        self.data_range = check_data_range(data_range)
        if min_log_sigma == "public_code":
            min_log_sigma = PUBLIC_CODE_MIN_LOG_SIGMA
        if min_log_sigma is not None and (
                isinstance(min_log_sigma, bool) or not isinstance(min_log_sigma, int | float)
                or not math.isfinite(min_log_sigma)):
            raise ValueError(
                "optimal sigma: min_log_sigma must be a finite number, 'public_code' (= -6) "
                f"or None, got {min_log_sigma!r}")
        if scope not in SCOPES:
            raise ValueError(f"optimal sigma: scope must be one of {SCOPES}, got {scope!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"optimal sigma: decay must be in [0, 1), got {decay}")
        if train_sigma not in ("batch", "running"):
            raise ValueError(
                f"optimal sigma: train_sigma must be 'batch' or 'running', got {train_sigma!r}"
            )
        self.scope: Scope = scope
        self.shared_dims = check_shared_dims(shared_dims, scope)
        self.decay = decay
        self.train_sigma: TrainSigma = train_sigma
        self.min_log_sigma = None if min_log_sigma is None else float(min_log_sigma)
        #: The floor in force (``min_sigma`` as passed, or the default of ``data_range``).
        self.min_sigma: float = resolve_min_sigma(min_sigma, self.data_range)
        self.mean_activation = resolve_mean_activation(mean_activation, data_range)
        # Running variance: a scalar (shared; per_image: the harmonic mean over images, the
        # value behind effective_beta) or a (C, *spatial) tensor (per_dim, sized on first use).
        self.running_var: torch.Tensor
        self.num_batches_tracked: torch.Tensor
        self.register_buffer("running_var", torch.ones(()) if scope != "per_dim" else torch.ones(0))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        #: Whether training-mode calls update the running variance (:meth:`running_frozen`).
        self.running_updates = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._NAMES[self.scope]

    @property
    def valid_bound(self) -> bool:  # type: ignore[override]
        return self.scope != "per_image"

    @property
    def fits_test_data(self) -> bool:  # type: ignore[override]
        return self.scope == "per_image"

    @property
    def invalid_bound_reason(self) -> str | None:  # type: ignore[override]
        if self.scope == "per_image":
            return (
                "per-image optimal sigma is fitted to each test image itself, so its "
                "'bound' is not a bound on log p(x) (the paper reports only FID for it)"
            )
        return None

    @property
    def train_bound_bias(self) -> str | None:
        if self.train_sigma == "running" or self.scope == "per_image":
            return None  # unbiased; per_image has no bound at all (bound_validity says why)
        return ("optimistic: sigma is fitted to each training batch itself (the paper's App. "
                "C); train_sigma=running removes the bias, and the val/test bound uses the "
                "running sigma")

    def params_per_channel(self) -> int:
        return 1

    # -- the variance ---------------------------------------------------------------------------
    def batch_variance(self, mean: torch.Tensor, target: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        """The MLE variance of the batch over the scope's axes (all-reduced when distributed),
        over the observed entries when ``mask`` is given (:func:`masked_variance`).

        Returns a tensor broadcastable to ``target``: ``()``, ``(B, 1, ...)`` or ``(C, ...)``.
        Gradients flow through it (at the unclipped optimum they vanish: d NLL / d sigma = 0).
        """
        return masked_variance(mean, target, mask, self.scope, self.shared_dims)[0]

    def _summary_var(self, var: torch.Tensor,
                     observed: torch.Tensor | None = None) -> torch.Tensor:
        """What the running average tracks: the variance itself, or for per-image its harmonic
        mean over the (global) batch's examples (those with something observed)."""
        var = var.detach()
        if self.scope != "per_image":
            return var
        inv = var.clamp_min(self.min_sigma**2).reciprocal()
        if observed is None:
            count = torch.tensor(float(var.shape[0]), device=var.device)
        else:
            inv, count = torch.where(observed, inv, 0), observed.sum().to(var.dtype)
        return all_reduce_sum(count) / all_reduce_sum(inv.sum())

    @torch.no_grad()
    def _update_running(self, var: torch.Tensor, observed: torch.Tensor | None = None) -> None:
        if not self.running_updates:  # inside running_frozen(): a second look at a batch
            return
        summary = self._summary_var(var, observed).to(
            self.running_var.dtype if self.running_var.numel() else torch.float32)
        if self.running_var.shape != summary.shape:  # per_dim: sized on first use
            if self.running_var.numel():  # (shapes only: no tensor value decides, for compile)
                raise LikelihoodInputError(self._shape_changed(summary.shape))
            self.running_var = torch.ones_like(summary)
            self.num_batches_tracked.zero_()
        # Tensor ops only, no data-dependent Python branches, so torch.compile traces the step
        # in one graph. A non-finite batch (the trainer skips its step) leaves the average alone.
        finite = torch.isfinite(summary).all()
        first = self.num_batches_tracked == 0
        averaged = torch.lerp(summary, self.running_var, self.decay)
        if observed is None or self.scope == "per_image":  # per_image: empty batch -> NaN
            self.running_var.copy_(torch.where(finite, torch.where(first, summary, averaged),
                                               self.running_var))
            self.num_batches_tracked.add_(finite.long())
            return
        # Masked: only what was observed moves; the first batch initialises every entry.
        take = finite & observed.any()
        new = torch.where(first, summary, torch.where(observed, averaged, self.running_var))
        self.running_var.copy_(torch.where(take, new, self.running_var))
        self.num_batches_tracked.add_(take.long())

    def _running_var_for(self, mean: torch.Tensor) -> torch.Tensor:
        if self.num_batches_tracked == 0:
            raise LikelihoodInputError(
                f"{self.name}: no running estimate of sigma yet; train the head first (in "
                "training mode sigma is the batch MSE and needs target=x)"
            )
        if self.scope == "per_dim":
            axes = per_dim_axes(mean.dim(), self.shared_dims)
            wanted = tuple(1 if a in axes else n for a, n in enumerate(mean.shape))[1:]
            if self.running_var.shape != wanted:
                raise LikelihoodInputError(self._shape_changed(wanted))
        return self.running_var.to(mean.dtype, copy=True)

    def _shape_changed(self, shape: Sequence[int]) -> str:
        hint = ("" if self.shared_dims else "; for data whose size changes (a sequence's "
                "length) share sigma over that dimension, e.g. shared_dims=(1,) for (B, T, D)")
        return (f"{self.name}: the running per-dimension variance has shape "
                f"{tuple(self.running_var.shape)} but these data's has shape {tuple(shape)}"
                + hint)

    def variance(self, mean: torch.Tensor, target: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        """The variance this head uses for decoder means ``mean`` now, broadcastable to the data.

        Training mode: the batch's (masked) MSE, or the running estimate with
        ``train_sigma="running"``, and the running estimate is updated; eval mode: the running
        estimate (``per_image``: always the example's own MSE). ``target`` is needed whenever
        the batch's MSE is.
        """
        if not (self.training or self.scope == "per_image"):
            return self._running_var_for(mean)
        if target is None:
            mode = "training mode" if self.training else "per-image scope"
            raise LikelihoodInputError(
                f"{self.name}: in {mode} sigma is the MSE against the data, so call "
                "head(params, target=x)"
            )
        var, observed = masked_variance(mean, target, mask, self.scope, self.shared_dims)
        if self.training:
            if self.train_sigma == "running" and self.num_batches_tracked > 0:
                running = self._running_var_for(mean)
                if self.scope == "per_image":  # running tracks a summary: use it shared
                    running = running.expand(mean.shape[0], *([1] * (mean.dim() - 1)))
                self._update_running(var, observed)
                return running
            self._update_running(var, observed)
        return var

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        return self.masked_distribution(params, target, None)

    def masked_distribution(self, params: torch.Tensor, target: torch.Tensor | None,
                            mask: torch.Tensor | None) -> ImageLikelihood:
        """The distribution with sigma from the observed entries of ``target`` only."""
        mean = self.mean_location(params)
        sigma = self.sigma_from_variance(self.variance(mean, target, mask))
        base = BinnedNormal(mean, sigma.expand_as(mean), validate_args=False)
        return ImageLikelihood(base, "unit", sigma=sigma, validate_args=self.validate_args,
                               data_range=self.data_range)

    def sigma_from_variance(self, var: torch.Tensor) -> torch.Tensor:
        """``sqrt(var)`` floored at ``min_sigma`` (and soft-clipped if ``min_log_sigma`` is set).

        Above the floor, without the soft clip, this is the exact MLE and the gradient of the NLL
        with respect to sigma vanishes at it.
        """
        return self.log_sigma_from_variance(var).exp()

    def log_sigma_from_variance(self, var: torch.Tensor) -> torch.Tensor:
        """``log`` of :meth:`sigma_from_variance` (computed directly, without the round trip)."""
        log_sigma = 0.5 * var.clamp_min(self.min_sigma**2).log()
        if self.min_log_sigma is not None:
            log_sigma = softclip(log_sigma, self.min_log_sigma)
        return log_sigma

    def predict_mean(self, params: torch.Tensor) -> torch.Tensor:
        """The decoder mean; sigma (which needs data or a running estimate) plays no part."""
        self._check_params(params, None)
        return location(upcast(params), self.mean_activation)

    # -- reporting and state --------------------------------------------------------------------
    @property
    def sigma(self) -> torch.Tensor:
        """The running estimate of sigma (what eval mode uses; for per_dim/per_image the shared
        sigma with the same effective beta)."""
        var = self.running_var.detach()
        if self.scope == "per_dim" and var.numel():
            var = var.reciprocal().mean().reciprocal()
        elif var.numel() == 0:
            var = torch.ones(())
        return self.sigma_from_variance(var)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "running_var"
        if key in state_dict and state_dict[key].shape != self.running_var.shape:
            self.running_var = torch.empty_like(state_dict[key])  # per_dim: sized on first use
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, scope={self.scope!r}, decay={self.decay}, "
            f"train_sigma={self.train_sigma!r}, min_log_sigma={self.min_log_sigma}, "
            f"min_sigma={self.min_sigma:.4g}"
            + (f", shared_dims={self.shared_dims}" if self.shared_dims else "")
        )


# (shared_dims is fixed where it means nothing, so it is not listed as their option)
register("optimal_sigma", "Gaussian, analytic sigma^2 = batch MSE, shared (optimal sigma-VAE)")(
    functools.partial(OptimalSigmaGaussian, scope="shared", shared_dims=())
)
register("optimal_sigma_per_image", "Gaussian, analytic sigma per image (not a valid bound)")(
    functools.partial(OptimalSigmaGaussian, scope="per_image", shared_dims=())
)
register("optimal_sigma_per_dim", "Gaussian, analytic sigma per data dimension (batch average)")(
    functools.partial(OptimalSigmaGaussian, scope="per_dim")
)
