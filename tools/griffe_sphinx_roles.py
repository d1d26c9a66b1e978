"""A Griffe extension for the API reference (``mkdocs.yml``): the docstrings' Sphinx roles as
Markdown.

The docstrings name other objects Sphinx's way, ``:class:`~sigmavae.run.Trainer``` or
``:func:`.driver.run_experiments```; mkdocstrings renders Markdown, where those would show as
literal text. Each role becomes a code span showing what Sphinx would show: the last part of a
``~``-target, a target without its leading dots, or the title of ``title <target>``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

#: ``:role:`text``` (also ``:py:role:``), for the roles the docstrings use.
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|data|attr|mod|exc|obj|const):`([^`]+)`")


def shown(text: str) -> str:
    """What Sphinx prints for the role's ``text``."""
    titled = re.fullmatch(r"(.+?)\s*<([^>]+)>", text)
    if titled:
        return titled.group(1)
    if text.startswith("~"):
        return text.lstrip("~").rsplit(".", 1)[-1]
    return text.lstrip(".")


def to_markdown(docstring: str) -> str:
    """``docstring`` with every Sphinx role replaced by a Markdown code span."""
    return ROLE.sub(lambda m: f"`{shown(m.group(1))}`", docstring)


class SphinxRoles(griffe.Extension):
    """Rewrites each object's docstring as it is loaded (before mkdocstrings parses it)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
