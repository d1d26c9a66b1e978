"""Option checking shared by the head, model and data-set registries (sigmavae.options)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

from sigmavae.options import OptionError, check_options, describe_type

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
