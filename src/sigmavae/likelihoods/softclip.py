"""Soft clipping of log-standard-deviations (Chua et al., 2018), as used by the sigma-VAE paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The paper's lower bound on log sigma: sigma >= e^-6 ~ 0.0025, about half the distance
#: between two 8-bit intensities on the [0, 1] scale (1/255 ~ 0.0039).
DEFAULT_MIN_LOG_SIGMA = -6.0


def softclip(
    x: torch.Tensor, minimum: float | None = None, maximum: float | None = None
) -> torch.Tensor:
    """Smoothly bound ``x`` from below and/or above.

    ``x := maximum - softplus(maximum - x)`` then ``x := minimum + softplus(x - minimum)``
    (Chua et al., 2018; the sigma-VAE paper, Sec. 3.1). Either bound may be ``None`` to skip it.
    The result is differentiable everywhere and tends to ``x`` far from the bounds.

    Args:
        x: any shape, typically a log standard deviation (nats).
        minimum: lower bound ``lambda_min`` (e.g. ``-6``), or ``None``.
        maximum: upper bound ``lambda_max``, or ``None``.

    Returns:
        A tensor of the same shape as ``x``.
    """
    if minimum is not None and maximum is not None and minimum >= maximum:
        raise ValueError(f"softclip: minimum ({minimum}) must be below maximum ({maximum})")
    if maximum is not None:
        x = maximum - F.softplus(maximum - x)
    if minimum is not None:
        x = minimum + F.softplus(x - minimum)
    return x
