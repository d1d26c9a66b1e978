"""The API reference's Griffe extension (tools/griffe_sphinx_roles.py): Sphinx roles in the
docstrings become the code spans Sphinx would show (what ``sigmavae likelihoods NAME`` prints as
plain text, from the same ``sigmavae.options.role_text``), and nothing else changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigmavae.options import SPHINX_ROLE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def roles(load_tool):
    return load_tool("griffe_sphinx_roles")


@pytest.mark.parametrize("text, want", [
    (":class:`~sigmavae.run.Trainer`", "`Trainer`"),
    (":func:`.driver.run_experiments`", "`driver.run_experiments`"),
    (":meth:`LikelihoodHead.scalar_sigma`", "`LikelihoodHead.scalar_sigma`"),
    (":data:`QUANTIZATION_SIGMA` = 1/(255 sqrt(12))", "`QUANTIZATION_SIGMA` = 1/(255 sqrt(12))"),
    (":py:attr:`the floor <min_sigma>`", "`the floor`"),
    ("see :mod:`sigmavae.yaml12` and :exc:`ValueError`.",
     "see `sigmavae.yaml12` and `ValueError`."),
])
def test_each_role_becomes_what_sphinx_shows(roles, text, want):
    assert roles.to_markdown(text) == want


def test_text_without_roles_is_left_alone(roles):
    text = "``sigma^2 = MSE``: a `code` span, a [link][x.y], key: value, and :notarole:`x`"
    assert roles.to_markdown(text) == text


def test_no_docstring_of_the_package_keeps_a_role_once_loaded(roles):
    import griffe  # the docs extra (part of dev): what `make docs` uses
    package = griffe.load("sigmavae", search_paths=[ROOT / "src"],
                          extensions=griffe.load_extensions(roles.SphinxRoles))
    left = []

    def visit(obj):
        if obj.docstring is not None and SPHINX_ROLE.search(obj.docstring.value):
            left.append(obj.path)
        for member in obj.members.values():
            if not member.is_alias:
                visit(member)

    visit(package)
    assert left == []
