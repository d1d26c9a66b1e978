"""Keyword options of a registered factory (a head, a model), checked before it is called.

Names are checked against the factory's signature and values against its type hints with
pydantic (strict: ``"0.5"`` is not a number, ``true`` is not an integer), so that a wrong option
from a config file or ``--likelihood-option`` / ``--model-option`` is one clear line naming the
option and what it takes, instead of a ``TypeError`` from deep inside a constructor.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError


class OptionError(ValueError):
    """An option name or value that the factory does not take (one line, names both)."""


def _options_of(factory: Callable[..., Any], internal: Iterable[str] = (),
                ) -> tuple[Callable[..., Any], dict[str, inspect.Parameter]]:
    """The function whose signature holds ``factory``'s options, and those parameters (less
    ``self``, ``internal`` ones and a partial's fixed keywords)."""
    target, fixed = factory, set(internal)
    if isinstance(factory, functools.partial):
        target, fixed = factory.func, fixed | set(factory.keywords)
    function = target.__init__ if inspect.isclass(target) else target
    parameters = {
        name: p for name, p in inspect.signature(function).parameters.items()
        if name != "self" and name not in fixed
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return function, parameters


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
    function, parameters = _options_of(factory, internal)
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
    args = typing.get_args(hint)
    if origin is collections.abc.Callable:
        return "a function (from Python only)"
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return f"a list of {len(args)} values"
    if origin in (tuple, list, collections.abc.Sequence):
        return f"a list of {_PLURAL.get(args[0], 'values') if args else 'values'}"
    return _TYPE_WORDS.get(hint, str(hint))


_TYPE_WORDS: dict[Any, str] = {float: "a number", int: "an integer", bool: "True or False",
                               str: "a string", Path: "a path", type(None): "None"}
_PLURAL: dict[Any, str] = {float: "numbers", int: "integers", str: "strings", Path: "paths"}


@dataclasses.dataclass(frozen=True)
class OptionDoc:
    """One option of a factory, for people: its name, type in words, default and meaning."""

    name: str
    type: str
    default: str
    text: str


def describe_options(factory: Callable[..., Any],
                     internal: Iterable[str] = ()) -> list[OptionDoc]:
    """The options of ``factory`` in signature order, each with its type in words
    (:func:`describe_type`), its default (``repr``; ``"required"`` without one) and the text its
    docstring's Google-style ``Args:`` section gives it (``""`` where it gives none): the
    class's and its bases', or the function's and then that of the class it is annotated to
    return (a builder passing its options on to a constructor)."""
    function, parameters = _options_of(factory, internal)
    try:
        hints = typing.get_type_hints(function)
    except Exception:
        hints = {}
    owner = factory.func if isinstance(factory, functools.partial) else factory
    texts: dict[str, str] = {}
    # a class's own Args first, then its bases' (an inherited constructor's options)
    returned = hints.get("return")
    sources = [*(inspect.getmro(owner) if inspect.isclass(owner) else [owner]), function,
               *([returned] if inspect.isclass(returned) else [])]
    for source in sources:
        for name, text in args_section(inspect.getdoc(source) or "").items():
            texts.setdefault(name, text)
    return [OptionDoc(name, describe_type(hints[name]) if name in hints else "any value",
                      "required" if p.default is p.empty else repr(p.default),
                      texts.get(name, ""))
            for name, p in parameters.items()]


def options_text(title: str, factory: Callable[..., Any], internal: Iterable[str],
                 how: str) -> str:
    """``title``, then each option of ``factory`` (:func:`describe_options`) with its type,
    default and meaning as plain text wrapped for a terminal; ``how`` says how to pass one
    (e.g. ``"--model-option KEY=VALUE"``). What ``sigmavae likelihoods NAME`` prints."""
    options = describe_options(factory, internal)
    if not options:
        return f"{title}\noptions: none"
    lines = [title, f"options ({how}):"]
    for option in options:
        lines.append(f"  {option.name} ({option.type}; default {option.default})")
        if option.text:
            lines.extend(textwrap.wrap(plain_text(option.text), width=92,
                                       initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)


#: A Sphinx role in a docstring, ``:role:`text``` (also ``:py:role:``); group 1 is ``text``.
SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|data|attr|mod|exc|obj|const):`([^`]+)`")


def role_text(text: str) -> str:
    """What Sphinx shows for a role's ``text``: the title of ``title <target>``, the last part
    of a ``~``-target, else the target without its leading dots."""
    titled = re.fullmatch(r"(.+?)\s*<([^>]+)>", text)
    if titled:
        return titled.group(1)
    if text.startswith("~"):
        return text.lstrip("~").rsplit(".", 1)[-1]
    return text.lstrip(".")


def plain_text(text: str) -> str:
    """Docstring markup read as plain text: ``code`` and Sphinx roles (``:class:`~a.B```) as
    the words they show (:func:`role_text`)."""
    return SPHINX_ROLE.sub(lambda m: role_text(m.group(1)), text).replace("``", "")


def args_section(docstring: str) -> dict[str, str]:
    """``name -> text`` from the ``Args:`` section of a (dedented) Google-style docstring, each
    entry's continuation lines joined into one line."""
    entries: dict[str, list[str]] = {}
    lines = iter(docstring.splitlines())
    for line in lines:
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            break
    else:
        return {}
    indent: int | None = None
    current: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        depth, text = len(line) - len(line.lstrip()), line.strip()
        indent = depth if indent is None else indent
        if depth < indent or (depth == indent and re.fullmatch(r"[A-Z][\w ]*:", text)):
            break  # the next section (Returns:, Raises:, ...)
        head, colon, rest = text.partition(":")
        if depth == indent and colon and re.fullmatch(r"\w+(\s*,\s*\w+)*(\s*\(.*\))?", head):
            current = [n.strip() for n in head.split("(")[0].split(",")]
            for name in current:
                entries[name] = [rest.strip()] if rest.strip() else []
        else:
            for name in current:
                entries[name].append(text)
    return {name: " ".join(words) for name, words in entries.items()}


def _accepts(hint: Any, kind: type) -> bool:
    """Whether ``hint`` (possibly a union) admits values of ``kind`` (tuple: any tuple type)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, kind) for arg in typing.get_args(hint))
    return hint is kind or origin is kind
