"""A Griffe extension for the API reference (``mkdocs.yml``): the docstrings' Sphinx roles as
Markdown.

The docstrings name other objects Sphinx's way, ``:class:`~sigmavae.run.Trainer``` or
``:func:`.driver.run_experiments```; mkdocstrings renders Markdown, where those would show as
literal text. Each role becomes a code span showing what Sphinx would show: the last part of a
``~``-target, a target without its leading dots, or the title of ``title <target>``.
"""

from __future__ import annotations

from typing import Any

import griffe

from sigmavae.options import SPHINX_ROLE, role_text


def to_markdown(docstring: str) -> str:
    """``docstring`` with every Sphinx role replaced by a Markdown code span of what Sphinx
    would show (:func:`sigmavae.options.role_text`)."""
    return SPHINX_ROLE.sub(lambda m: f"`{role_text(m.group(1))}`", docstring)


class SphinxRoles(griffe.Extension):
    """Rewrites each object's docstring as it is loaded (before mkdocstrings parses it)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
