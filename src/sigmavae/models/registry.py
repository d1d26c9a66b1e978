"""Name -> model builder (the CLI's ``--model``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..likelihoods import LikelihoodHead
from .conv import build_conv_vae
from .vae import VAE

_BUILDERS: dict[str, Callable[..., VAE]] = {"conv": build_conv_vae}


def model_names() -> list[str]:
    return sorted(_BUILDERS)


def build_model(name: str, image_shape: tuple[int, int, int], head: LikelihoodHead,
                **options: Any) -> VAE:
    """Build model ``name`` for images ``(C, H, W)`` with likelihood ``head``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return _BUILDERS[name](image_shape, head, **options)
