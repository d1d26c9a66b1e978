"""Name -> model builder (the CLI's ``--model``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..likelihoods import LikelihoodHead
from ..options import OptionError, check_options
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
    options = check_model_options(name, options)
    try:
        return _BUILDERS[name](image_shape, head, **options)
    except (TypeError, ValueError) as err:  # a value the builder refuses
        raise OptionError(f"model {name!r}: {err}") from err


def check_model_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check the name and the option names and types of model ``name`` without building it.

    Raises:
        OptionError: an unknown model or option, or a value of the wrong type.
    """
    if not isinstance(name, str) or name not in _BUILDERS:
        raise OptionError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return check_options(f"model {name!r}", _BUILDERS[name], options,
                         internal=("image_shape", "head"))
