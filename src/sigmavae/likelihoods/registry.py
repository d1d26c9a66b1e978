"""Name -> head registry. The names are public API: the CLI and configs use them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    """Build the head registered as ``name`` with keyword ``options`` (see its docstring)."""
    _check_name(name)
    try:
        return _REGISTRY[name](**options)
    except TypeError as err:
        raise TypeError(f"likelihood {name!r}: bad options {sorted(options)}: {err}") from err


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown likelihood {name!r}; choose one of: {', '.join(names())}")
