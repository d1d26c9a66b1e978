"""The Gaussian negative log-likelihood with a calibrated sigma, as a function: one line replaces
``F.mse_loss`` for people who will not adopt a distribution object.

>>> nll, sigma = gaussian_nll(pred, target)           # was: F.mse_loss(pred, target)
>>> loss = (nll + kl).mean()                           # nats per example, a real ELBO
>>> nll, sigma = gaussian_nll(pred, target, mask=m)    # m: (B, T) steps of (B, T, D) sequences

``pred`` and ``target`` have shape ``(B, ...)`` (any rank, any range: the data as given);
``nll`` is ``(B,)``: ``-log N(target; pred, sigma^2)`` in nats, summed over every non-batch
dimension (over the observed entries under ``mask``). ``sigma`` is

* ``"optimal"`` (the default): the paper's analytic optimal sigma (Sec. 4),
  ``sigma^2 = MSE(pred, target)`` over the batch (``scope="shared"``), over each example
  (``"per_image"``: not a valid bound, the example sets its own sigma) or over the batch per data
  dimension (``"per_dim"``); computed without gradient (a constant of the step, as the analytic
  estimate is: by the envelope theorem the gradients with respect to ``pred`` of the mean NLL
  are those of the distribution heads, whose sigma carries gradient) and floored at
  ``min_sigma``; under torch.distributed the sums and counts are all-reduced
  (:func:`~sigmavae.likelihoods.optimal.masked_variance`);
* a positive float: a fixed sigma (``sqrt(beta / 2)`` is the beta-VAE of ``SSE + beta KL``);
* a tensor broadcastable to the data: the standard deviation(s) themselves (e.g. predicted);
* or pass ``log_sigma=`` a tensor (an ``nn.Parameter`` you learn, or predicted log-sigmas).

The returned ``sigma`` is detached and broadcastable to ``pred`` (a scalar for a shared sigma).
:class:`GaussianNLL` is the same with state: a running average of the optimal sigma for
evaluation (the optimal-sigma head's own code), or a learned log-sigma parameter.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from ._optimiser_check import OptimiserCheck, forward_watch, rearm, watch
from .base import LikelihoodInputError, align_mask, upcast
from .optimal import (
    REAL_MIN_SIGMA,
    SCOPES,
    OptimalSigmaGaussian,
    Scope,
    TrainSigma,
    check_shared_dims,
    masked_variance,
)
from .special import HALF_LOG_2PI

__all__ = ["GaussianNLL", "gaussian_nll"]

SigmaSpec = Literal["optimal"] | float | torch.Tensor


def _as_batched(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes, evaluate half precision in float32, and view ``(B,)`` data as ``(B, 1)``."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise LikelihoodInputError("gaussian_nll: pred and target must be tensors")
    if pred.shape != target.shape or pred.dim() < 1 or pred.numel() == 0:
        raise LikelihoodInputError(
            f"gaussian_nll: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have "
            "the same non-empty shape (B, ...)")
    if not pred.is_floating_point() or not target.is_floating_point():
        raise LikelihoodInputError(f"gaussian_nll: pred and target must be floating point, got "
                                   f"{pred.dtype} and {target.dtype}")
    pred = upcast(pred)
    target = target.to(pred.dtype)
    if pred.dim() == 1:
        pred, target = pred.unsqueeze(1), target.unsqueeze(1)
    return pred, target


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"gaussian_nll: scope must be one of {SCOPES}, got {scope!r}")


def _nll(pred: torch.Tensor, target: torch.Tensor, log_sigma: torch.Tensor,
         mask: torch.Tensor | None) -> torch.Tensor:
    """``-log N(target; pred, exp(log_sigma)^2)`` summed per example, ``(B,)``."""
    diff = target - pred if mask is None else torch.where(mask, target - pred, 0)
    elem = 0.5 * (diff * torch.exp(-log_sigma)).pow(2) + log_sigma + HALF_LOG_2PI
    if mask is not None:
        elem = torch.where(mask, elem, 0)
    return elem.flatten(1).sum(1)


def _unbatch_sigma(sigma: torch.Tensor, squeezed: bool) -> torch.Tensor:
    return sigma.squeeze(-1) if squeezed and sigma.dim() > 0 else sigma


def gaussian_nll(
    pred: torch.Tensor,
    target: torch.Tensor,
    sigma: SigmaSpec | None = None,
    *,
    log_sigma: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    scope: Scope = "shared",
    min_sigma: float = REAL_MIN_SIGMA,
    shared_dims: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``-log N(target; pred, sigma^2)`` per example, nats, and the sigma used (module doc).

    Args:
        pred: ``(B, ...)``, floats of any range.
        target: the same shape as ``pred``.
        sigma: ``"optimal"`` (default unless ``log_sigma`` is given), a positive float, or a
            tensor of standard deviations broadcastable to the data.
        log_sigma: a tensor of log standard deviations (instead of ``sigma``), e.g. a learned
            ``nn.Parameter``; gradients flow into it.
        mask: observed entries (``True``/1), ``(B,)``, ``(B, T)`` (extended over the remaining
            dimensions) or broadcastable to the data; masked entries contribute 0 and are left
            out of the optimal sigma; they may hold anything, NaN included.
        scope: for ``"optimal"``: ``"shared"``, ``"per_image"`` or ``"per_dim"``.
        min_sigma: floor of the optimal sigma (default ``1e-6``, data units).
        shared_dims: ``per_dim`` only: data dimensions the sigma is shared over as well
            (``(1,)``: one sigma per feature of ``(B, T, D)`` sequences).

    Returns:
        ``(nll, sigma)``: ``nll`` ``(B,)`` nats; ``sigma`` detached, broadcastable to ``pred``.
    """
    squeezed = pred.dim() == 1 if isinstance(pred, torch.Tensor) else False
    pred, target = _as_batched(pred, target)
    if mask is not None:
        mask = align_mask(mask, pred.shape, device=pred.device)
    if log_sigma is not None:
        if sigma is not None:
            raise ValueError("gaussian_nll: pass sigma or log_sigma, not both")
        log_sigma = log_sigma.to(pred.dtype) if log_sigma.dtype != pred.dtype else log_sigma
    elif sigma is None or (isinstance(sigma, str) and sigma == "optimal"):
        _check_scope(scope)
        shared_dims = check_shared_dims(shared_dims, scope)
        if not (isinstance(min_sigma, int | float) and 0.0 < min_sigma < math.inf):
            raise ValueError(f"gaussian_nll: min_sigma must be a positive number, got "
                             f"{min_sigma!r}")
        with torch.no_grad():
            var, _ = masked_variance(pred.detach(), target, mask, scope, shared_dims)
            log_sigma = 0.5 * var.clamp_min(min_sigma**2).log()
    elif isinstance(sigma, torch.Tensor):
        log_sigma = sigma.to(pred.dtype).log()
    elif isinstance(sigma, int | float) and not isinstance(sigma, bool):
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"gaussian_nll: sigma must be a positive finite number, got {sigma}")
        log_sigma = torch.tensor(math.log(sigma), dtype=pred.dtype, device=pred.device)
    else:
        raise ValueError(f"gaussian_nll: sigma must be 'optimal', a positive float or a tensor, "
                         f"got {sigma!r}")
    nll = _nll(pred, target, log_sigma, mask)
    return nll, _unbatch_sigma(log_sigma.detach().exp(), squeezed)


class GaussianNLL(nn.Module):
    """:func:`gaussian_nll` with state, for training and evaluation.

    ``GaussianNLL()`` (``sigma="optimal"``): in training mode sigma is the batch's MSE (or the
    running estimate, ``train_sigma="running"``) and a running average is kept (``decay``); in
    eval mode the running average is used, so a test NLL uses a sigma fitted on training data.
    The statistic, its running average (saved in ``state_dict``) and its all-reduce are those of
    :class:`~sigmavae.likelihoods.OptimalSigmaGaussian` (on ``data_range="real"`` data, identity
    mean). ``sigma="learned"``: a shared ``log_sigma`` ``nn.Parameter`` (``init_sigma``), which
    must be in the optimiser (``list(criterion.parameters())``; unlike most criteria this one
    has parameters): like the ``learned_sigma`` head it warns once,
    :class:`~sigmavae.likelihoods.SigmaNotOptimisedWarning`, when training leaves it unchanged;
    a float: a fixed sigma.

    >>> crit = GaussianNLL()
    >>> nll, sigma = crit(pred, target, mask=m)        # (B,) nats, sigma used
    """

    def __init__(
        self,
        sigma: Literal["optimal", "learned"] | float = "optimal",
        scope: Scope = "shared",
        decay: float = 0.9,
        train_sigma: TrainSigma = "batch",
        min_sigma: float = REAL_MIN_SIGMA,
        init_sigma: float = 1.0,
        shared_dims: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.mode: str
        self.optimal: OptimalSigmaGaussian | None = None
        self.log_sigma: nn.Parameter | None = None
        self.fixed_sigma: float | None = None
        if shared_dims and sigma != "optimal":
            raise ValueError(f"GaussianNLL: shared_dims is an option of sigma='optimal' with "
                             f"scope='per_dim', not of sigma={sigma!r}")
        if isinstance(sigma, str):
            if sigma == "optimal":
                self.optimal = OptimalSigmaGaussian(
                    scope=scope, decay=decay, train_sigma=train_sigma, min_sigma=min_sigma,
                    shared_dims=shared_dims, data_range="real", mean_activation="identity",
                    validate_args=False)
            elif sigma == "learned":
                if not (init_sigma > 0 and math.isfinite(init_sigma)):
                    raise ValueError(f"GaussianNLL: init_sigma must be > 0, got {init_sigma}")
                self.log_sigma = nn.Parameter(torch.tensor(math.log(init_sigma)))
                #: Whether an optimiser steps ``log_sigma`` (as for the learned_sigma head).
                self.optimiser_check = OptimiserCheck("log_sigma", "log-sigma", "criterion")
                watch(self, "optimiser_check")
            else:
                raise ValueError(f"GaussianNLL: sigma must be 'optimal', 'learned' or a "
                                 f"positive float, got {sigma!r}")
            self.mode = sigma
        else:
            if isinstance(sigma, bool) or not (sigma > 0 and math.isfinite(sigma)):
                raise ValueError(f"GaussianNLL: sigma must be a positive finite number, got "
                                 f"{sigma!r}")
            self.mode, self.fixed_sigma = "fixed", float(sigma)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        rearm(self, "optimiser_check")  # pickled or deep-copied: the hook is not live

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(nll (B,), sigma)`` as :func:`gaussian_nll`, with this module's sigma."""
        if self.optimal is not None:
            squeezed = isinstance(pred, torch.Tensor) and pred.dim() == 1
            p, t = _as_batched(pred, target)
            m = None if mask is None else align_mask(mask, p.shape, device=p.device)
            with torch.no_grad():
                var = self.optimal.variance(p.detach(), t, m)
                log_sigma = self.optimal.log_sigma_from_variance(var)
            nll = _nll(p, t, log_sigma, m)
            return nll, _unbatch_sigma(log_sigma.exp(), squeezed)
        if self.log_sigma is not None:
            forward_watch(self, "optimiser_check")
            return gaussian_nll(pred, target, log_sigma=self.log_sigma, mask=mask)
        return gaussian_nll(pred, target, sigma=self.fixed_sigma, mask=mask)

    def running_frozen(self) -> contextlib.AbstractContextManager[Any]:
        """Within this block training-mode calls leave the running sigma as it is (a batch
        scored a second time in one step; as ``LikelihoodHead.running_frozen``). Without a
        running estimate (learned or fixed sigma) it changes nothing."""
        if self.optimal is None:
            return contextlib.nullcontext(self)
        return self.optimal.running_frozen()

    @property
    def sigma(self) -> torch.Tensor:
        """The sigma for evaluation now: the running estimate (optimal; per_dim/per_image: the
        shared sigma with the same effective beta), the learned or the fixed one (detached)."""
        if self.optimal is not None:
            return self.optimal.sigma
        if self.log_sigma is not None:
            return self.log_sigma.detach().exp()
        return torch.tensor(self.fixed_sigma)

    def extra_repr(self) -> str:
        if self.optimal is not None:
            return (f"sigma='optimal', scope={self.optimal.scope!r}, decay={self.optimal.decay}, "
                    f"train_sigma={self.optimal.train_sigma!r}, "
                    f"min_sigma={self.optimal.min_sigma:.3g}")
        return "sigma='learned'" if self.log_sigma is not None else f"sigma={self.fixed_sigma}"
