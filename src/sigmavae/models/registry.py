"""Name -> model builder (the CLI's ``--model``), filled by :func:`register_model` decorators.

A builder is ``builder(image_shape, head, **options) -> model``: it gets the shape of one data
point (``(C, H, W)``, or ``(T, C, H, W)`` for a sequence model) and the likelihood head, and
returns any ``nn.Module`` that follows the protocol of :mod:`sigmavae.objective`. Its keyword
options (the ``--model-option`` keys) are checked against its signature and type hints:

>>> @register_model("mine", "my own model")
... def build_mine(image_shape, head, *, latent_dim: int = 16) -> nn.Module: ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from ..likelihoods import LikelihoodHead
from ..options import OptionError, check_options, options_text
from ..registry import Registry

ModelBuilder = Callable[..., nn.Module]

#: The modules whose decorators register the built-in models.
BUILTIN_MODULES = ("conv", "hierarchical", "svg")
#: Parameters of a builder that the caller sets (never user options).
INTERNAL_PARAMETERS = ("image_shape", "data_shape", "head")


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")


MODELS: Registry[ModelBuilder] = Registry("model", load_builtins=_load_builtins)


def register_model(name: str, summary: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: register a model builder under ``name`` with a one-line summary."""
    return MODELS.register(name, summary)


def model_names() -> list[str]:
    """The registered model names, sorted."""
    return MODELS.names()


def build_model(name: str, image_shape: tuple[int, ...], head: LikelihoodHead,
                **options: Any) -> nn.Module:
    """Build model ``name`` for data points of shape ``image_shape`` with likelihood ``head``.

    Raises:
        OptionError: an unknown model or option, a value of the wrong type, or one the builder
            refuses (``model 'name': <its reason>``).
    """
    options = check_model_options(name, options)
    try:
        return MODELS.get(name)(image_shape, head, **options)
    except (TypeError, ValueError) as err:  # a value the builder refuses
        raise OptionError(f"model {name!r}: {err}") from err


def describe_model(name: str) -> str:
    """Model ``name`` for people: its summary, then each option with its type, default and
    meaning (from the builder's docstring), as ``sigmavae models NAME`` prints it.

    Raises:
        OptionError: an unknown name (listing the known ones).
    """
    return options_text(f"{name}: {MODELS.summary(name)}", MODELS.get(name),
                        INTERNAL_PARAMETERS, "--model-option KEY=VALUE; model_options: in a "
                        "config")


def check_model_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check the name and the option names and types of model ``name`` without building it.

    Raises:
        OptionError: an unknown model or option, or a value of the wrong type.
    """
    builder = MODELS.get(name)
    return check_options(f"model {name!r}", builder, options, internal=INTERNAL_PARAMETERS)
