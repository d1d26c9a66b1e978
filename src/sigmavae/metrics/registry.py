"""The metric registry: each metric module registers its ``run`` function with a decorator.

>>> @register_metric("iwae", "importance-weighted bound on log p(x)", title="IWAE bound",
...                  rows=markdown_rows)
... def run(ctx: EvalContext) -> dict: ...

``run(ctx)`` returns a dict with ``available`` (and units in every key name); ``rows(result)``
gives the markdown table rows ``(quantity, value, note)``. ``default=True`` puts the metric in
what ``sigmavae eval`` runs without ``--metrics`` (only metrics that take seconds on a CPU).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..registry import Registry

MetricFn = Callable[[Any], dict]
RowsFn = Callable[[dict], list[tuple[str, str, str]]]

#: The modules whose decorators register the built-in metrics.
BUILTIN_MODULES = ("elbo", "discretized", "iwae", "fid", "mutual_info", "active_units",
                   "calibration", "video", "fvd", "refit_sigma")


@dataclass(frozen=True)
class Metric:
    """One registered metric: how to compute it and how to show it."""

    name: str
    run: MetricFn
    rows: RowsFn
    title: str
    default: bool


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
                    default: bool = False) -> Callable[[MetricFn], MetricFn]:
    """Decorator registering a metric's ``run`` function under ``name``."""

    def wrap(run: MetricFn) -> MetricFn:
        METRICS.register(name, summary)(Metric(name, run, rows, title, default))
        return run

    return wrap
