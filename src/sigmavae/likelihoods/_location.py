"""How a head turns a raw decoder output into a location on the [0, 1] data scale."""

from __future__ import annotations

from typing import Literal

import torch

MeanActivation = Literal["sigmoid", "identity"]
MEAN_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "identity")


def check_mean_activation(activation: str) -> MeanActivation:
    if activation not in MEAN_ACTIVATIONS:
        raise ValueError(
            f"mean_activation must be one of {MEAN_ACTIVATIONS}, got {activation!r}"
        )
    return activation  # type: ignore[return-value]


def location(raw: torch.Tensor, activation: MeanActivation) -> torch.Tensor:
    """``sigmoid(raw)`` (a mean inside (0, 1), as in the paper's code) or ``raw`` unchanged."""
    return torch.sigmoid(raw) if activation == "sigmoid" else raw
