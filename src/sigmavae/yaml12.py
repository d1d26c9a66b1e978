"""YAML as people write it today: PyYAML's safe loader with the YAML 1.2 core schema.

PyYAML implements YAML 1.1, where ``2e-3`` is a string (a 1.1 float needs a dot: ``2.0e-3``),
``yes`` / ``on`` are booleans, ``1_000`` is 1000, ``012`` is octal 10 and ``1:30`` is 90. Config
files and ``KEY=VALUE`` options are written the YAML 1.2 way (the default of YAML since 2009 and
of most other tools), so every YAML a user gives sigmavae is read by :func:`load`, with the
implicit types of the 1.2 *core schema* (YAML 1.2.2, section 10.3.2) and nothing else:

=========  =====================================================================================
null       ``null``, ``Null``, ``NULL``, ``~``, empty
bool       ``true``, ``True``, ``TRUE``, ``false``, ``False``, ``FALSE``
int        ``[-+]?[0-9]+`` (decimal, leading zeros too: ``012`` is 12), ``0o17``, ``0x1F``
float      ``[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?``: ``1e-3``, ``2E-3``,
           ``-1.5e+2``, ``.5``, ``1.``; and ``.inf``, ``-.inf``, ``.nan`` (any case as listed)
=========  =====================================================================================

Everything else is a string: ``1_000``, ``e3``, ``1e``, ``yes``, ``on``, ``1:30``,
``2024-01-01`` (no implicit timestamps). Merge keys (``<<: *base``) still work.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

__all__ = ["Loader", "load"]


class Loader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` resolving plain scalars by the YAML 1.2 core schema."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """``012`` -> 12 (decimal, not 1.1's octal), ``0o17`` -> 15, ``0x1F`` -> 31."""
    text = str(loader.construct_scalar(node))
    if text[:2].lower() in ("0o", "0x"):
        return int(text, 0)
    return int(text, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    """``1e-3``, ``.5``, ``-.inf``, ``.nan`` -> float."""
    text = str(loader.construct_scalar(node))
    bare = text.lstrip("+-").lower()
    if bare in (".inf", ".nan"):
        value = math.inf if bare == ".inf" else math.nan
        return -value if text.startswith("-") else value
    return float(text)


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
# (tag, pattern, first characters); int before float: "12" is an integer
_CORE = (
    ("tag:yaml.org,2002:null", r"null|Null|NULL|~|", ["n", "N", "~", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    (_INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (_FLOAT, r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", list("-+.0123456789")),
    ("tag:yaml.org,2002:merge", r"<<", ["<"]),
)
# a fresh table: none of YAML 1.1's resolvers (bool, int, float, null, timestamp, value)
Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in _CORE:
    Loader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), _first)
Loader.add_constructor(_INT, _construct_int)
Loader.add_constructor(_FLOAT, _construct_float)


def load(text: str) -> Any:
    """Parse a YAML document (a config file, or the value of a ``KEY=VALUE`` option) with the
    YAML 1.2 core schema: ``load("lr: 2e-3")`` -> ``{"lr": 0.002}``.

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=Loader)  # safe: Loader is a SafeLoader
