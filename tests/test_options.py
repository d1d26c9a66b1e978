"""Option checking shared by the head, model and data-set registries (sigmavae.options)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

from sigmavae.options import (
    OptionError,
    args_section,
    check_options,
    describe_options,
    describe_type,
    plain_text,
)

if TYPE_CHECKING:
    from collections import OrderedDict  # only for the unresolvable annotation below


def _factory(size: int = 1, scale: float | Literal["auto"] = "auto", where: str | Path = ".",
             shape: tuple[int, int] = (1, 1), flag: bool = False) -> None:
    return None


@pytest.mark.parametrize(("options", "message"), [
    ({"size": "3"}, "thing: option size must be an integer, got '3' (str)"),
    ({"size": True}, "thing: option size must be an integer, got True (bool)"),
    ({"scale": "big"}, "thing: option scale must be a number or 'auto', got 'big' (str)"),
    ({"where": 5}, "thing: option where must be a path, got 5 (int)"),
    ({"shape": [1, "a"]}, "thing: option shape must be a list of 2 values"),
    ({"flag": 1}, "thing: option flag must be True or False, got 1 (int)"),
    ({"colour": 1, "size": 2}, "thing: unknown option colour; its options are: size, scale"),
])
def test_wrong_names_and_types_are_one_line(options, message):
    with pytest.raises(OptionError) as err:
        check_options("thing", _factory, options)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_values_that_fit_pass_converted():
    checked = check_options("thing", _factory, {"size": 2, "scale": 1, "shape": [3, 4],
                                                "where": "data", "flag": True})
    assert checked == {"size": 2, "scale": 1, "shape": (3, 4), "where": "data", "flag": True}
    assert describe_type(float | None) == "a number or None"


def test_partial_keywords_and_internal_parameters_are_not_options():
    with pytest.raises(OptionError, match="unknown option size; its options are: scale"):
        check_options("thing", functools.partial(_factory, size=3), {"size": 1},
                      internal=("where", "shape", "flag"))


def test_unresolvable_annotations_check_names_only():
    def user_factory(table: OrderedDict = None, n: int = 1) -> None:  # noqa: RUF013
        return None

    assert check_options("mine", user_factory, {"n": "x"}) == {"n": "x"}
    with pytest.raises(OptionError, match="unknown option m"):
        check_options("mine", user_factory, {"m": 1})


class _Base:
    """A base.

    Args:
        size: how many (inherited
            text, two lines).
    """

    def __init__(self, size: int = 1, dims: Sequence[int] = ()) -> None:
        """Args:
        dims: the dimensions, from ``__init__``'s own docstring.
        """


class _Child(_Base):
    """A child whose constructor is its base's.

    Args:
        size: the child's own words win.

    Returns:
        nothing that is an option.
    """


def test_options_are_described_from_the_docstrings_of_the_class_and_its_bases():
    described = describe_options(_Child)
    assert [(o.name, o.type, o.default) for o in described] == [
        ("size", "an integer", "1"), ("dims", "a list of integers", "()")]
    assert described[0].text == "the child's own words win."
    assert described[1].text == "the dimensions, from ``__init__``'s own docstring."
    assert describe_options(_Base)[0].text == "how many (inherited text, two lines)."
    assert describe_options(functools.partial(_Base, size=2))[0].name == "dims"


def test_args_sections_and_plain_text():
    doc = ("Summary.\n\nArgs:\n    a, b: shared words\n        go on.\n    c (int): typed.\n"
           "\nRaises:\n    X: no.")
    assert args_section(doc) == {"a": "shared words go on.", "b": "shared words go on.",
                                 "c": "typed."}
    assert args_section("No sections here.") == {}
    assert plain_text("``x`` of :class:`~a.b.C` and :func:`.d.e`") == "x of C and d.e"
    assert plain_text("below :py:attr:`the floor <min_sigma>`") == "below the floor"
    assert describe_type(Sequence[int]) == "a list of integers"
    assert describe_type(tuple[int, ...]) == "a list of integers"
    assert describe_type(Callable[[int], int] | None) == "a function (from Python only) or None"
