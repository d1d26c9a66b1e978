"""Turning an exception into the one line an error message quotes."""

from __future__ import annotations


def first_line(err: BaseException, with_type: bool = False) -> str:
    """The first line of ``str(err)`` (its type name if the message is empty); with
    ``with_type``, prefixed by the type: ``"ModuleNotFoundError: No module named 'x'"``."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    line = text.splitlines()[0]
    return f"{type(err).__name__}: {line}" if with_type else line
