"""The Fréchet distance of two feature sets, for any feature network (FID's, reused by FVD).

``d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))`` between Gaussians fitted to the
features (means ``mu``, unbiased covariances ``S``). The implementation is the one FID uses:
torchmetrics' :class:`~torchmetrics.image.fid.FrechetInceptionDistance`, which accumulates the
feature sums in float64 and takes the trace of the square root from the eigenvalues of
``S_1 S_2``. This module gives it a feature network of any input shape (videos for FVD) with a
known feature size, and the distance of two feature tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # imported where used, on demand
    from torchmetrics.image.fid import FrechetInceptionDistance


class _KnownSizeFeatures(nn.Module):
    """``net`` with its feature size ``num_features`` (torchmetrics reads the attribute instead
    of running a probe input of a fixed image shape)."""

    def __init__(self, net: nn.Module, num_features: int) -> None:
        super().__init__()
        self.net = net
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def frechet_metric(extractor: nn.Module, num_features: int) -> FrechetInceptionDistance:
    """A torchmetrics Fréchet-distance metric over ``extractor``'s features.

    ``extractor`` maps a batch (any shape ``(N, ...)`` it accepts, e.g. videos) to ``(N, d)``
    features with ``d = num_features``; feed it with ``metric.update(batch, real=...)`` (or
    :func:`sigmavae.metrics.fid.fid_from_images`) and read ``metric.compute()``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")
    return FrechetInceptionDistance(feature=_KnownSizeFeatures(extractor, num_features),
                                    normalize=True)


@torch.no_grad()
def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """The Fréchet distance between the Gaussians fitted to two feature sets ``(N, d)`` and
    ``(M, d)`` (``N, M >= 2``), computed in float64 (squared feature units)."""
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"frechet_distance: features must be (N, d) and (M, d), got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"frechet_distance: at least 2 feature vectors per set, got "
                         f"{real.shape[0]} and {fake.shape[0]}")
    metric = frechet_metric(nn.Identity(), real.shape[1])
    metric.update(real.double().cpu(), real=True)
    metric.update(fake.double().cpu(), real=False)
    return float(metric.compute())
