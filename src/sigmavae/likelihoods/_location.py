"""How a head turns a raw decoder output into a location, and what data a continuous head models.

A continuous head declares the range of its data, ``data_range``:

* ``"unit"`` (the default): ``[0, 1]``, 8-bit images divided by 255;
* ``"signed"``: ``[-1, 1]``, 8-bit images as ``2 x / 255 - 1`` (video and latent-diffusion
  autoencoders);
* ``"real"``: any finite real numbers (vectors, standardised features, world-model observations).

The declaration sets what the data checks accept and the default ``mean_activation``:
``sigmoid`` for ``unit`` (a mean inside (0, 1), as in the paper's code), ``tanh`` for ``signed``
and ``identity`` for ``real``. An explicit ``mean_activation`` always wins (``identity`` for a
decoder that already ends in its own squashing, or outputs the mean directly).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch

MeanActivation = Literal["sigmoid", "identity"]
MEAN_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "identity")
#: The activations a continuous head accepts (``tanh`` puts the mean in (-1, 1)).
ContinuousMeanActivation = Literal["sigmoid", "tanh", "identity"]
CONTINUOUS_MEAN_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "identity")

DataRange = Literal["unit", "signed", "real"]
DATA_RANGES: tuple[str, ...] = ("unit", "signed", "real")
#: The mean activation each data range gets unless one is passed.
DEFAULT_ACTIVATION: dict[str, str] = {"unit": "sigmoid", "signed": "tanh", "real": "identity"}
#: The interval each data range declares, in words (error messages and docs).
RANGE_WORDS: dict[str, str] = {
    "unit": "[0, 1] (8-bit images divided by 255)",
    "signed": "[-1, 1] (8-bit images as 2 x / 255 - 1)",
    "real": "any finite real numbers",
}


class DoubleSquashWarning(UserWarning):
    """A sigmoid head received decoder outputs that already look like a sigmoid's."""


def check_mean_activation(activation: str) -> MeanActivation:
    if activation not in MEAN_ACTIVATIONS:
        raise ValueError(
            f"mean_activation must be one of {MEAN_ACTIVATIONS}, got {activation!r}"
        )
    return activation  # type: ignore[return-value]


def check_data_range(data_range: str) -> DataRange:
    if data_range not in DATA_RANGES:
        raise ValueError(f"data_range must be one of {DATA_RANGES}, got {data_range!r}")
    return data_range  # type: ignore[return-value]


def resolve_mean_activation(activation: str | None, data_range: str) -> ContinuousMeanActivation:
    """``activation``, or the default of ``data_range`` when it is ``None`` (checked)."""
    if activation is None:
        activation = DEFAULT_ACTIVATION[check_data_range(data_range)]
    if activation not in CONTINUOUS_MEAN_ACTIVATIONS:
        raise ValueError(
            f"mean_activation must be one of {CONTINUOUS_MEAN_ACTIVATIONS} or None (the "
            f"default of data_range), got {activation!r}"
        )
    return activation  # type: ignore[return-value]


def location(raw: torch.Tensor, activation: str) -> torch.Tensor:
    """``sigmoid(raw)`` (a mean inside (0, 1), as in the paper's code), ``tanh(raw)`` (inside
    (-1, 1)) or ``raw`` unchanged (``identity``)."""
    if activation == "sigmoid":
        return torch.sigmoid(raw)
    if activation == "tanh":
        return torch.tanh(raw)
    return raw


#: Fewer raw outputs than this are too few to say that they look like a sigmoid's.
_SQUASH_MIN_ELEMENTS = 64


def looks_squashed(raw: torch.Tensor) -> bool:
    """Whether raw outputs, at least 64 distinct values, all lie strictly inside (0, 1), as a
    sigmoid's output does. Raw logits almost never all do (chance below ``2^-64`` for symmetric
    ones); a few values broadcast to a large tensor say nothing."""
    if raw.numel() < _SQUASH_MIN_ELEMENTS:
        return False
    raw = raw.detach()
    lo, hi = torch.aminmax(raw)
    if not bool((lo > 0) & (hi < 1)):
        return False
    return torch.unique(raw).numel() >= _SQUASH_MIN_ELEMENTS


def warn_double_squash(name: str) -> None:
    warnings.warn(
        f"{name}: every decoder output lies in (0, 1), as a sigmoid's does, and this head "
        "applies mean_activation='sigmoid' on top; if the decoder already ends in a sigmoid, "
        "pass mean_activation='identity' (shown once per head)",
        DoubleSquashWarning, stacklevel=4,
    )
