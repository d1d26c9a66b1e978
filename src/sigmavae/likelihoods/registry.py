"""Name -> head registry. The names are public API: the CLI and configs use them.

A head is registered where it is defined, with its name and a one-line summary in the
decorator (the one place the name is written; a head class gets it as its ``name``):

>>> @register("my_head", "Laplace per pixel, predicted scale")
... class MyHead(LikelihoodHead): ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from ..options import OptionError, check_options, options_text
from ..registry import Registry
from .base import LikelihoodHead

HeadFactory = Callable[..., LikelihoodHead]
F = TypeVar("F", bound=Callable[..., Any])

#: The modules whose decorators register the built-in heads.
BUILTIN_MODULES = ("gaussian", "optimal", "student_t", "discrete", "discretized")
#: Constructor parameters that are not user options (the caller sets them).
INTERNAL_OPTIONS = ("validate_args",)


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")


HEADS: Registry[HeadFactory] = Registry("likelihood", load_builtins=_load_builtins)


def register(name: str, summary: str) -> Callable[[F], F]:
    """Decorator: register a head class or factory under ``name`` with a one-line summary.

    A :class:`LikelihoodHead` subclass that sets no ``name`` of its own gets ``name``.
    """
    add = HEADS.register(name, summary)

    def wrap(factory: F) -> F:
        add(factory)
        if (isinstance(factory, type) and issubclass(factory, LikelihoodHead)
                and not factory.__dict__.get("name")):
            factory.name = name
        return factory

    return wrap


def names() -> list[str]:
    """The registered head names, sorted."""
    return HEADS.names()


def summary(name: str) -> str:
    """One line saying what head ``name`` is."""
    return HEADS.summary(name)


def describe(name: str) -> str:
    """Head ``name`` for people: its summary, then each option with its type, default and
    meaning (from the head's docstring), as ``sigmavae likelihoods NAME`` prints it.

    Raises:
        OptionError: an unknown name (listing the known ones).
    """
    return options_text(f"{name}: {summary(name)}", HEADS.get(name), INTERNAL_OPTIONS,
                        "--likelihood-option KEY=VALUE; likelihood_options: in a config")


def create(name: str, **options: Any) -> LikelihoodHead:
    """Build the head registered as ``name`` with keyword ``options`` (see its docstring).

    Raises:
        OptionError: an unknown name, an unknown option, a value of the wrong type, or one the
            head refuses (the message names the head, the option and what it takes).
    """
    factory = HEADS.get(name)
    what = f"likelihood {name!r}"
    options = check_options(what, factory, options, internal=INTERNAL_OPTIONS)
    try:
        return factory(**options)
    except (TypeError, ValueError) as err:
        raise OptionError(f"{what}: {str(err).removeprefix(f'{name}: ')}") from err
