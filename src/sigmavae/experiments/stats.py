"""Across-seed estimates and the two-standard-error rule that decides every verdict."""

from __future__ import annotations

import math
from collections import Counter
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
    #: what the error of a single seed (``n == 1``) is over, e.g. "test images"
    over: str = "test images"
    #: the error is the runs' own (:func:`with_sampling_floor`), larger than the seeds' spread
    floored: bool = False

    @property
    def sd(self) -> float | None:
        """The seeds' standard deviation (unbiased), ``stderr * sqrt(n)``; None for one seed."""
        return None if self.stderr is None else self.stderr * math.sqrt(self.n)

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


def with_sampling_floor(est: Estimate | None, stderrs: Iterable[float | None]
                        ) -> Estimate | None:
    """``est`` (a mean over ``n`` seeds) with its standard error raised to at least the error
    of the runs' own sampling, ``sqrt(sum(se_i^2)) / n``, where the runs' values carry
    independent sampling errors ``se_i`` (an FID of each run's own prior samples): two or three
    seeds can fall closer together than their own sampling error by chance, and their spread
    would then understate the error of the mean. Unchanged for one seed, or where a run's
    error is unknown."""
    ses = [float(se) for se in stderrs if se is not None]
    if est is None or est.n < 2 or len(ses) != est.n:
        return est
    floor = math.sqrt(sum(se**2 for se in ses)) / est.n
    if est.stderr is not None and est.stderr >= floor:
        return est
    return Estimate(est.mean, floor, est.n, est.over, floored=True)


def prediction_interval(est: Estimate, level: float = 0.95) -> tuple[float, float]:
    """Where one more seed's value falls with probability ``level``, from ``est``'s ``n`` seeds
    (normal values; Student's t with ``n - 1`` degrees of freedom): ``mean +- t * sd *
    sqrt(1 + 1/n)``, ``sd`` the seeds' standard deviation. The range of ``n`` seeds is no such
    interval: it holds one more exchangeable value only with probability ``(n - 1) / (n + 1)``
    (a half for 3 seeds).

    Raises:
        ValueError: ``est`` has fewer than 2 seeds (no spread to go by).
    """
    from scipy.stats import t

    sd = est.sd
    if sd is None or est.n < 2:
        raise ValueError(f"a prediction interval needs 2 or more seeds, got {est.n}")
    half = float(t.ppf(0.5 + level / 2, est.n - 1)) * sd * math.sqrt(1 + 1 / est.n)
    return est.mean - half, est.mean + half


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
    if est.n == 1:  # an error over test examples, not over seeds
        return f"{fmt_number(est.mean)} ± {fmt_number(est.stderr, 2)} (1 seed; SE over {est.over})"
    if est.floored:
        return f"{fmt_number(est.mean)} ± {fmt_number(est.stderr, 2)} (SE: the runs' own)"
    return f"{fmt_number(est.mean)} ± {fmt_number(est.stderr, 2)}"


def most_common(values: Iterable[str]) -> tuple[str, Counter[str]]:
    """The most frequent of ``values`` (ties: the first in sort order, so that the choice does
    not depend on the order runs are read in) and the count of each. ``values`` non-empty."""
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v)), counts


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


@dataclass(frozen=True)
class Bounds:
    """A quantity known only between two estimates: ``low <= true value <= high``.

    A measurement is ``Bounds(est, est)``; a censored value has one side open (``None``): a
    variance that never converged within the run is *at least* the run's length (``high`` is
    None), an I_e at its ceiling ``log N`` is at least that (the leave-one-out estimate, where
    recorded, closes it from above).
    """

    low: Estimate | None
    high: Estimate | None

    @classmethod
    def point(cls, est: Estimate | None) -> Bounds | None:
        return None if est is None else cls(est, est)

    @property
    def censored(self) -> bool:
        return self.low is None or self.high is None or self.low != self.high

    def __str__(self) -> str:
        return fmt_bounds(self)


def fmt_bounds(value: Bounds | None) -> str:
    """``m ± se`` for a measurement; ``>= m ± se`` / ``<= m ± se`` for a one-sided bound;
    ``[a ± se, b ± se]`` for an interval."""
    if value is None or (value.low is None and value.high is None):
        return "n/a"
    if value.low == value.high:
        return fmt_estimate(value.low)
    if value.high is None:
        return f">= {fmt_estimate(value.low)}"
    if value.low is None:
        return f"<= {fmt_estimate(value.high)}"
    return f"[{fmt_estimate(value.low)}, {fmt_estimate(value.high)}]"


def bounds_below(a: Bounds | None, b: Bounds | None) -> bool | None:
    """Whether ``a < b`` beyond two standard errors, using only what the bounds guarantee: True
    when ``a``'s upper end is below ``b``'s lower end, False when ``b``'s upper end is below
    ``a``'s lower end, None otherwise (an open side cannot decide). For measurements this is
    :func:`less_than`."""
    if a is None or b is None:
        return None
    if less_than(a.high, b.low) is True:
        return True
    if less_than(b.high, a.low) is True:
        return False
    return None


def combine(terms: Iterable[tuple[float, Bounds | None]]) -> Bounds | None:
    """``sum_k c_k x_k`` of independent quantities (different runs): interval arithmetic on
    the bounds, the standard error ``sqrt(sum_k c_k^2 se_k^2)``. A term shared by two
    differences enters once with its summed coefficient, so its error is counted as such
    (``(a - b) - (b - c) = a - 2b + c``, ``se^2 = se_a^2 + 4 se_b^2 + se_c^2``)."""
    terms = list(terms)
    if not terms or any(x is None for _, x in terms):
        return None

    def side(low: bool) -> Estimate | None:
        # the low end takes each positive term's low and each negative term's high
        ends = [(c, x.low if (c >= 0) == low else x.high) for c, x in terms if x is not None]
        if any(est is None for _, est in ends):
            return None
        parts = [(c, est) for c, est in ends if est is not None]
        mean = sum(c * est.mean for c, est in parts)
        known = all(est.stderr is not None for _, est in parts)
        se = math.sqrt(sum((c * (est.stderr or 0.0)) ** 2 for c, est in parts)) if known else None
        return Estimate(mean, se, min(est.n for _, est in parts))

    return Bounds(side(True), side(False))


def estimate_bounds(pairs: Iterable[tuple[float | None, float | None]]) -> Bounds | None:
    """Bounds over seeds from each seed's ``(low, high)`` (``high`` None: open above; a
    measurement has ``low == high``): the mean of the lows and the mean of the highs, each side
    open if any seed's is."""
    pairs = [(lo, hi) for lo, hi in pairs if lo is not None or hi is not None]
    if not pairs:
        return None
    lows = [lo for lo, _ in pairs]
    highs = [hi for _, hi in pairs]
    low = None if any(v is None for v in lows) else estimate(lows)
    high = None if any(v is None for v in highs) else estimate(highs)
    if low is not None and high is not None and all(lo == hi for lo, hi in pairs):
        high = low
    return Bounds(low, high)
