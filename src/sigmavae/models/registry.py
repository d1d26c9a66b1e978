"""Name -> model builder (the CLI's ``--model``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..likelihoods import LikelihoodHead
from .conv import build_conv_vae
from .hierarchical import build_hierarchical_vae
from .vae import VAE

_BUILDERS: dict[str, Callable[..., VAE]] = {
    "conv": build_conv_vae,  # the paper's small conv VAE (App. B)
    "hierarchical": build_hierarchical_vae,  # 15 layers of latent variables (BIVA's baseline)
}


def model_names() -> list[str]:
    return sorted(_BUILDERS)


def build_model(name: str, image_shape: tuple[int, int, int], head: LikelihoodHead,
                **options: Any) -> VAE:
    """Build model ``name`` for images ``(C, H, W)`` with likelihood ``head``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    try:
        return _BUILDERS[name](image_shape, head, **options)
    except TypeError as err:  # an option the builder does not take
        raise ValueError(f"model {name!r}: {err}") from err
