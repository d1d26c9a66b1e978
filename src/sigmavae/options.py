"""Keyword options of a registered factory (a head, a model), checked before it is called.

Names are checked against the factory's signature and values against its type hints with
pydantic (strict: ``"0.5"`` is not a number, ``true`` is not an integer), so that a wrong option
from a config file or ``--likelihood-option`` / ``--model-option`` is one clear line naming the
option and what it takes, instead of a ``TypeError`` from deep inside a constructor.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError


class OptionError(ValueError):
    """An option name or value that the factory does not take (one line, names both)."""


def check_options(what: str, factory: Callable[..., Any], options: dict[str, Any],
                  internal: Iterable[str] = ()) -> dict[str, Any]:
    """Check ``options`` for ``factory``; return them with lists made tuples where hinted.

    Args:
        what: how the error names the thing, e.g. ``"likelihood 'fixed_sigma'"``.
        factory: a class, function or ``functools.partial``; its keywords are the options.
        options: the user's keyword options.
        internal: parameters the caller sets itself (never user options).

    Raises:
        OptionError: an unknown option, or a value of the wrong type.
    """
    target, fixed = factory, set(internal)
    if isinstance(factory, functools.partial):
        target, fixed = factory.func, fixed | set(factory.keywords)
    function = target.__init__ if inspect.isclass(target) else target
    parameters = {
        name: p for name, p in inspect.signature(function).parameters.items()
        if name != "self" and name not in fixed
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        valid = ", ".join(parameters) or "none"
        raise OptionError(f"{what}: unknown option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)}; its options are: {valid}")
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # annotations that do not resolve (a user's factory): check names only
        hints = {}
    return {name: check_value(what, name, value, hints.get(name))
            for name, value in options.items()}


def check_value(what: str, name: str, value: Any, hint: Any) -> Any:
    """Check one option ``value`` against its type ``hint`` (``None``: anything goes).

    Returns the value, with a list made a tuple and a string made a :class:`~pathlib.Path`
    where the hint asks for one (YAML and the command line have neither).

    Raises:
        OptionError: "``what``: option ``name`` must be <type in words>, got <value> (<type>)".
    """
    if hint is None:
        return value
    if isinstance(value, list) and _accepts(hint, tuple):
        value = tuple(value)
    elif isinstance(value, str) and _accepts(hint, Path) and not _accepts(hint, str):
        value = Path(value)
    try:
        TypeAdapter(hint).validate_python(value, strict=True)
    except ValidationError:
        raise OptionError(f"{what}: option {name} must be {describe_type(hint)}, got "
                          f"{value!r} ({type(value).__name__})") from None
    return value


def describe_type(hint: Any) -> str:
    """A type hint in words: ``float | None`` -> ``a number or None``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if Path in args:  # str | Path: "a path"
            args = tuple(a for a in args if a is not str)
        return " or ".join(dict.fromkeys(describe_type(arg) for arg in args))
    if origin is typing.Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {len(typing.get_args(hint))} values"
    return _TYPE_WORDS.get(hint, str(hint))


_TYPE_WORDS: dict[Any, str] = {float: "a number", int: "an integer", bool: "True or False",
                               str: "a string", Path: "a path", type(None): "None"}


def _accepts(hint: Any, kind: type) -> bool:
    """Whether ``hint`` (possibly a union) admits values of ``kind`` (tuple: any tuple type)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, kind) for arg in typing.get_args(hint))
    return hint is kind or origin is kind
