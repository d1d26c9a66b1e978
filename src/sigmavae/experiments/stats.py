"""Across-seed estimates and the two-standard-error rule that decides every verdict."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

#: Verdicts, as printed.
REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"


@dataclass(frozen=True)
class Estimate:
    """Mean of one quantity over seeds, with its standard error ``std / sqrt(n)``
    (unbiased std; ``None`` for a single seed, whose error is unknown)."""

    mean: float
    stderr: float | None
    n: int

    def __str__(self) -> str:
        return fmt_estimate(self)


def estimate(values: Iterable[float | None]) -> Estimate | None:
    """The :class:`Estimate` of the finite values given, or None if there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return Estimate(mean, None, 1)
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return Estimate(mean, math.sqrt(var / n), n)


def fmt_number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.{digits}g}" if abs(value) < 10 else f"{value:.1f}"


def fmt_estimate(est: Estimate | None) -> str:
    if est is None:
        return "n/a"
    if est.stderr is None:
        return f"{fmt_number(est.mean)} (1 seed)"
    return f"{fmt_number(est.mean)} ± {fmt_number(est.stderr, 2)}"


def less_than(a: Estimate | None, b: Estimate | None) -> bool | None:
    """Whether ``a < b`` beyond two standard errors of the difference: True (``a < b``), False
    (``a > b`` beyond two errors: the opposite holds), None (within the noise, a single seed or
    a missing value)."""
    if a is None or b is None or a.stderr is None or b.stderr is None:
        return None
    diff = b.mean - a.mean
    se = math.hypot(a.stderr, b.stderr)
    if diff > 2 * se:
        return True
    if diff < -2 * se:
        return False
    return None


def all_of(results: Iterable[bool | None]) -> str:
    """Every comparison holds -> reproduced; any is reversed -> not reproduced; else
    inconclusive."""
    results = list(results)
    if not results:
        return NOT_RUN
    if any(r is False for r in results):
        return NOT_REPRODUCED
    if all(r is True for r in results):
        return REPRODUCED
    return INCONCLUSIVE
