"""The metric registry: each metric module registers its ``run`` function with a decorator, and
declares the options it reads there.

>>> @register_metric("iwae", "importance-weighted bound on log p(x)", title="IWAE bound",
...                  rows=markdown_rows, options=[
...                      MetricOption("iwae_samples", int, 1000, "K importance samples per image",
...                                   ge=1)])
... def run(ctx: EvalContext) -> dict: ...

``run(ctx)`` returns a dict with ``available`` (and units in every key name); ``rows(result)``
gives the markdown table rows ``(quantity, value, note)``. ``default=True`` puts the metric in
what ``sigmavae eval`` runs without ``--metrics`` (only metrics that take seconds on a CPU).

An option is declared once, in its metric's registration (:class:`MetricOption`: name, type,
default, help, bounds), and that declaration is everything the front ends use:

* :func:`~sigmavae.metrics.report.evaluate_checkpoint` takes it as a keyword
  (``iwae_samples=100``), checks the value against the declaration before anything is loaded,
  strictly like :class:`~sigmavae.run.TrainConfig` (``"3"`` is not an integer; a bad value is an
  :class:`EvalOptionError` naming the option), and fills the default;
* ``sigmavae eval`` has a flag for it (``--iwae-samples``, the name with ``-`` for ``_``);
* :func:`~sigmavae.metrics.report.eval_flags` renders a dict of options as those flags;
* the metric reads it with ``ctx.option("iwae_samples")`` (the declared default if not given),
  and the report lists it under ``"options"``.

Options are one namespace shared by all metrics (``fvd`` reads the ``video_*`` frame options
that ``video`` declares); a name is declared by one metric only.
"""

from __future__ import annotations

import functools
import importlib
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from ..registry import Registry

MetricFn = Callable[[Any], dict]
RowsFn = Callable[[dict], list[tuple[str, str, str]]]

#: The modules whose decorators register the built-in metrics.
BUILTIN_MODULES = ("elbo", "discretized", "iwae", "fid", "mutual_info", "active_units",
                   "calibration", "video", "fvd", "refit_sigma")

#: The built-in options in the order a report's ``"options"`` (``eval.json``) and ``sigmavae eval
#: --help`` have always listed them; every other option follows, in its metric's display order.
#: Only the order: leaving a new option out of this list changes nothing else.
BUILTIN_OPTION_ORDER = ("elbo_samples", "iwae_samples", "mi_data", "mi_samples", "fid_samples",
                        "fid_features", "video_samples", "video_context_frames",
                        "video_future_frames", "fvd_features", "fvd_samples")

#: Names a metric option may not take: the other keywords of ``evaluate_checkpoint`` (and flags
#: of ``sigmavae eval``) and the entries it sets in ``ctx.options`` itself.
RESERVED_NAMES = frozenset({
    "checkpoint", "metrics", "split", "data_root", "limit", "data_options", "data_option",
    "batch_size", "seed", "device", "out", "log", "tune_malloc", "help",
    "plot_path", "video_plot_path", "title",
})


class EvalOptionError(ValueError):
    """A bad argument of :func:`~sigmavae.metrics.report.evaluate_checkpoint` (or a metric
    option), found before anything is loaded.

    ``option`` is the keyword (``"elbo_samples"``; the CLI shows it as ``--elbo-samples``) and
    ``detail`` the rest of the message (``" must be >= 1, got 0"``).
    """

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(option, detail)  # both in args: the error pickles (worker processes)
        self.option = option
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.option}{self.detail}"


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_ERROR_BOUNDS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le",
                 "less_than": "lt"}
_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "True or False"}
_PLURAL = {int: "integers", float: "numbers", str: "strings"}


@dataclass(frozen=True)
class MetricOption:
    """One option of a metric, declared in its :func:`register_metric`.

    Args:
        name: the keyword (``evaluate_checkpoint(..., name=value)``, ``ctx.option(name)``, the
            report's ``"options"``); the flag is ``--`` + name with ``-`` for ``_``.
        type: ``int``, ``float``, ``str``, ``bool`` or ``tuple[float, ...]`` (a list of
            numbers; ``tuple[int, ...]``, ``tuple[str, ...]`` too), ``| None`` where ``None``
            is a value (then it means "the metric decides", say how in ``help``).
        default: the value when the option is not given (checked against ``type``).
        help: one line for ``--help``: what the value is (``(default: ...)`` is appended).
        ge: lower bound of the value (of every item, for a list): value >= ge.
        gt: strict lower bound: value > gt.
        le: upper bound: value <= le.
        lt: strict upper bound: value < lt.
        aliases: more flags of ``sigmavae eval`` (``("--samples",)``).
        metavar: the value's name in ``--help`` (default ``N`` for an integer, ``X`` a number).
    """

    name: str
    type: Any
    default: Any
    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    #: ``bool``, ``int``, ``float``, ``str`` or ``tuple`` (set from ``type``)
    kind: type = field(init=False, repr=False)
    #: the item type of a ``tuple`` option (``None`` otherwise)
    item: type | None = field(init=False, repr=False)
    #: ``None`` is a valid value
    optional: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"metric option name must be lowercase letters, digits and _, "
                             f"got {self.name!r}")
        if self.name in RESERVED_NAMES:
            raise ValueError(f"metric option {self.name!r}: the name is taken by "
                             "evaluate_checkpoint itself; choose another")
        union = typing.get_origin(self.type) in (typing.Union, types.UnionType)
        members = typing.get_args(self.type) if union else (self.type,)
        inner = [m for m in members if m is not type(None)]
        kind = (typing.get_origin(inner[0]) or inner[0]) if len(inner) == 1 else None
        item = None
        if kind is tuple:
            args = typing.get_args(inner[0])
            item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
            if item not in _PLURAL:
                kind = None
        if kind not in (bool, int, float, str, tuple):
            raise ValueError(f"metric option {self.name!r}: type must be int, float, str, bool "
                             f"or tuple[float, ...] (optionally | None), got {self.type!r}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "item", item)
        object.__setattr__(self, "optional", type(None) in members)
        try:
            self.check(self.default)
        except EvalOptionError as err:
            raise ValueError(f"metric option {self.name!r}: its default fails its own check "
                             f"({err})") from None

    @property
    def flag(self) -> str:
        """The ``sigmavae eval`` flag: ``elbo_samples`` -> ``--elbo-samples``."""
        return "--" + self.name.replace("_", "-")

    @property
    def bounds(self) -> dict[str, float]:
        return {k: v for k in _BOUNDS if (v := getattr(self, k)) is not None}

    @functools.cached_property
    def _adapter(self) -> TypeAdapter[Any]:
        hint: Any = self.item if self.kind is tuple else self.kind
        if self.bounds:
            hint = Annotated[hint, Field(ge=self.ge, gt=self.gt, le=self.le, lt=self.lt)]
        if self.kind is tuple:
            hint = tuple[hint, ...]
        return TypeAdapter(hint | None if self.optional else hint)

    def check(self, value: Any) -> Any:
        """``value`` validated strictly (a list made a tuple for a list option, an integer made
        a float for a number), or :class:`EvalOptionError` naming the option."""
        if self.kind is tuple and isinstance(value, list):
            value = tuple(value)
        try:
            return self._adapter.validate_python(value, strict=True)
        except ValidationError as err:
            raise EvalOptionError(self.name, self._problem(err, value)) from None

    def _problem(self, err: ValidationError, value: Any) -> str:
        first = err.errors()[0]
        bound = _ERROR_BOUNDS.get(first["type"])
        limits = " and ".join(f"{_BOUNDS[k]} {v:g}" for k, v in self.bounds.items())
        if bound is not None and self.kind is not tuple:
            return f" must be {limits}, got {value}"
        if self.kind is tuple:
            assert self.item is not None
            what = f"a list of {_PLURAL[self.item]}" + (f", each {limits}" if limits else "")
            what += " (or None)" if self.optional else ""
        else:
            what = _WORDS[self.kind] + (" or None" if self.optional else "")
        return f" must be {what}, got {value!r}"

    def parse(self, text: str) -> Any:
        """A value from the command line's text (``"0.5,0.9"`` for a list); the check comes
        later, with the other options (:meth:`check`)."""
        if self.optional and self.kind is not str and text.lower() in ("none", "null"):
            return None
        if self.kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"expected true or false, got {text!r}")
            return text.lower() == "true"
        if self.kind is tuple:
            assert self.item is not None
            item = self.item
            return tuple(item(part.strip()) for part in text.split(",") if part.strip())
        return self.kind(text)

    def render(self, value: Any) -> list[str]:
        """The ``sigmavae eval`` arguments giving this option ``value`` (none for ``None``):
        what :meth:`parse` reads back."""
        if value is None:
            return []
        if self.kind is bool:
            return [self.flag if value else "--no-" + self.flag[2:]]
        if self.kind is tuple:
            return [self.flag, ",".join(str(v) for v in value)]
        return [self.flag, str(value)]


@dataclass(frozen=True)
class Metric:
    """One registered metric: how to compute it, how to show it, and the options it reads."""

    name: str
    run: MetricFn
    rows: RowsFn
    title: str
    default: bool
    options: tuple[MetricOption, ...] = ()


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def _display_rank(name: str, metric: Metric) -> int:
    """Built-ins in :data:`BUILTIN_MODULES` order (the ELBO first), then users' metrics."""
    modules = [f"{__package__}.{module}" for module in BUILTIN_MODULES]
    module = metric.run.__module__
    return modules.index(module) if module in modules else len(modules)


METRICS: Registry[Metric] = Registry("metric", load_builtins=_load_builtins,
                                     display_rank=_display_rank)


def register_metric(name: str, summary: str, *, title: str, rows: RowsFn,
                    default: bool = False,
                    options: Iterable[MetricOption] = ()) -> Callable[[MetricFn], MetricFn]:
    """Decorator registering a metric's ``run`` function under ``name``, with the options it
    reads (:class:`MetricOption`)."""
    declared = tuple(options)
    names = [option.name for option in declared]
    if len(set(names)) < len(names):
        raise ValueError(f"metric {name!r} declares an option twice: {names}")

    def wrap(run: MetricFn) -> MetricFn:
        METRICS.register(name, summary)(Metric(name, run, rows, title, default, declared))
        return run

    return wrap


def metric_options() -> dict[str, MetricOption]:
    """Every registered metric's options by name: the built-ins in
    :data:`BUILTIN_OPTION_ORDER`, then the others in their metrics' display order.

    Raises:
        ValueError: two metrics declare the same option.
    """
    found: dict[str, MetricOption] = {}
    owner: dict[str, str] = {}
    for metric_name in METRICS:
        for option in METRICS.get(metric_name).options:
            if option.name in found:
                raise ValueError(f"metric option {option.name!r} is declared by both "
                                 f"{owner[option.name]!r} and {metric_name!r}")
            found[option.name], owner[option.name] = option, metric_name
    order = [n for n in BUILTIN_OPTION_ORDER if n in found]
    order += [n for n in found if n not in order]
    return {n: found[n] for n in order}


def check_metric_options(options: Mapping[str, Any], *,
                         defaults: bool = True) -> dict[str, Any]:
    """``options`` checked against the declarations (:class:`EvalOptionError` for an unknown
    name, listing the valid ones, or a bad value); with ``defaults``, every declared option, its
    default where not given. In :func:`metric_options` order."""
    declared = metric_options()
    for name in options:
        if name not in declared:
            raise EvalOptionError(name, f": not an option of any metric; the metric options "
                                        f"are: {', '.join(declared)}")
    return {name: option.check(options[name]) if name in options else option.default
            for name, option in declared.items() if defaults or name in options}
