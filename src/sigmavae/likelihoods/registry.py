"""Name -> head registry. The names are public API: the CLI and configs use them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..options import OptionError, check_options
from .base import LikelihoodHead

_REGISTRY: dict[str, Callable[..., LikelihoodHead]] = {}
_SUMMARIES: dict[str, str] = {}


def register(name: str, summary: str) -> Callable[[Callable[..., LikelihoodHead]], Any]:
    """Decorator: register a head class or factory under ``name`` with a one-line summary."""

    def wrap(factory: Callable[..., LikelihoodHead]) -> Callable[..., LikelihoodHead]:
        if name in _REGISTRY:
            raise ValueError(f"likelihood {name!r} is registered twice")
        _REGISTRY[name] = factory
        _SUMMARIES[name] = summary
        return factory

    return wrap


def names() -> list[str]:
    """The registered head names, sorted."""
    return sorted(_REGISTRY)


def summary(name: str) -> str:
    """One line saying what head ``name`` is."""
    _check_name(name)
    return _SUMMARIES[name]


def create(name: str, **options: Any) -> LikelihoodHead:
    """Build the head registered as ``name`` with keyword ``options`` (see its docstring).

    Raises:
        OptionError: an unknown name, an unknown option, a value of the wrong type, or one the
            head refuses (the message names the head, the option and what it takes).
    """
    _check_name(name)
    what = f"likelihood {name!r}"
    options = check_options(what, _REGISTRY[name], options, internal=("validate",))
    try:
        return _REGISTRY[name](**options)
    except (TypeError, ValueError) as err:
        raise OptionError(f"{what}: {str(err).removeprefix(f'{name}: ')}") from err


def _check_name(name: str) -> None:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise OptionError(f"unknown likelihood {name!r}; choose one of: {', '.join(names())}")
