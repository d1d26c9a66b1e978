"""The two-standard-error rule behind every verdict, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sigmavae.experiments import EXPERIMENTS, claims
from sigmavae.experiments.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    Bounds,
    Estimate,
    all_of,
    bounds_below,
    combine,
    estimate,
    estimate_bounds,
    fmt_bounds,
    fmt_estimate,
    less_than,
    prediction_interval,
    with_sampling_floor,
)


def test_estimate_is_mean_and_standard_error():
    est = estimate([1.0, 2.0, 6.0])
    assert est.mean == pytest.approx(3.0)
    assert est.stderr == pytest.approx(math.sqrt(7.0 / 3.0))  # std 7^0.5 (n-1), / sqrt 3
    assert est.sd == pytest.approx(float(np.std([1.0, 2.0, 6.0], ddof=1)))
    assert estimate([2.5]) == Estimate(2.5, None, 1) and Estimate(2.5, None, 1).sd is None
    assert estimate([None, float("nan")]) is None


def test_less_than_needs_two_standard_errors():
    a, b = Estimate(0.0, 1.0, 3), Estimate(3.0, 1.0, 3)  # difference 3, its SE sqrt 2 = 1.41
    assert less_than(a, b) is True  # 3 > 2.83
    assert less_than(b, a) is False
    assert less_than(a, Estimate(2.5, 1.0, 3)) is None  # 2.5 < 2.83: within the noise
    assert less_than(a, Estimate(9.0, None, 1)) is None  # one seed: no error, no decision
    assert less_than(None, b) is None


def test_all_of():
    assert all_of([True, True]) == REPRODUCED
    assert all_of([True, None]) == INCONCLUSIVE
    assert all_of([True, False, None]) == NOT_REPRODUCED
    assert all_of([]) == NOT_RUN


def test_every_claim_names_an_experiment_and_a_rule():
    ids = [c.id for c in claims.CLAIMS]
    assert len(ids) == len(set(ids)) >= 10
    for claim in claims.CLAIMS:
        assert claim.experiment in EXPERIMENTS
        assert "2 SE" in claim.rule or "2-SE" in claim.rule


def test_a_shared_term_counts_twice_in_the_error_of_a_second_difference():
    a, b, c = Estimate(10.0, 1.0, 3), Estimate(4.0, 2.0, 3), Estimate(1.0, 0.5, 3)
    second = combine([(1.0, Bounds.point(a)), (-2.0, Bounds.point(b)), (1.0, Bounds.point(c))])
    assert second is not None and second.low == second.high
    assert second.low.mean == pytest.approx(10 - 8 + 1)
    # (a - b) - (b - c): b's error enters with weight 2, not as two independent terms
    assert second.low.stderr == pytest.approx(math.sqrt(1.0 + 4 * 4.0 + 0.25))
    naive = math.hypot(math.hypot(1.0, 2.0), math.hypot(2.0, 0.5))
    assert second.low.stderr > naive


def test_interval_arithmetic_takes_the_right_end_of_each_term():
    a = Bounds(Estimate(1.0, 0.1, 3), Estimate(3.0, 0.1, 3))
    b = Bounds(Estimate(10.0, 0.2, 3), Estimate(20.0, 0.2, 3))
    diff = combine([(1.0, b), (-1.0, a)])
    assert diff.low.mean == pytest.approx(10 - 3) and diff.high.mean == pytest.approx(20 - 1)
    open_above = Bounds(Estimate(5.0, 0.1, 3), None)
    assert combine([(1.0, open_above), (-1.0, a)]).high is None
    assert combine([(-1.0, open_above)]).low is None


def test_censored_values_decide_only_what_they_guarantee():
    never = Bounds(Estimate(5633.0, 0.0, 3), None)  # never converged: at least the run length
    fast = Bounds.point(Estimate(40.0, 5.0, 3))
    slow = Bounds.point(Estimate(9000.0, 10.0, 3))
    assert bounds_below(fast, never) is True  # 40 < anything >= 5633
    assert bounds_below(never, fast) is False
    assert bounds_below(slow, never) is None  # 9000 vs ">= 5633": cannot tell
    assert bounds_below(never, slow) is None
    assert fmt_bounds(never).startswith(">= 5633")
    assert fmt_bounds(fast) == "40.0 ± 5"
    assert fmt_bounds(Bounds(Estimate(1.0, 0.1, 3), Estimate(2.0, 0.1, 3))).startswith("[1 ")


def test_bounds_over_seeds_stay_open_if_any_seed_is_censored():
    assert estimate_bounds([(10.0, 10.0), (12.0, 12.0)]) == Bounds.point(estimate([10.0, 12.0]))
    mixed = estimate_bounds([(10.0, 10.0), (5633.0, None)])
    assert mixed.high is None and mixed.low == estimate([10.0, 5633.0])
    assert estimate_bounds([]) is None


def test_the_prediction_interval_holds_one_more_seed_95_times_in_100():
    """Against scipy's t interval, and by simulation: normal seeds, one more drawn after them."""
    from scipy import stats

    est = estimate([-2084.9, -2082.5, -2083.7])
    sd = est.stderr * math.sqrt(3)
    want = stats.t.interval(0.95, 2, loc=est.mean, scale=sd * math.sqrt(1 + 1 / 3))
    assert prediction_interval(est) == pytest.approx(want, rel=1e-12)
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(20_000, 4))
    held = in_range = 0
    for row in draws:
        low, high = prediction_interval(estimate(row[:3]))
        held += low <= row[3] <= high
        in_range += row[:3].min() <= row[3] <= row[:3].max()
    assert held / len(draws) == pytest.approx(0.95, abs=0.005)
    assert in_range / len(draws) == pytest.approx(0.5, abs=0.01)  # what the range would give
    with pytest.raises(ValueError, match="2 or more seeds"):
        prediction_interval(estimate([1.0]))


def test_a_mean_over_seeds_carries_at_least_the_runs_own_sampling_error():
    # two seeds 0.06 apart (SE over seeds 0.03), each with a bootstrap SE of 0.57: the mean's
    # error is at least sqrt(0.57^2 + 0.57^2) / 2 = 0.403, and the cell says whose it is
    floored = with_sampling_floor(estimate([51.54, 51.60]), [0.57, 0.57])
    assert floored.stderr == pytest.approx(math.sqrt(2 * 0.57**2) / 2) and floored.floored
    assert (floored.mean, floored.n) == (pytest.approx(51.57), 2)
    assert fmt_estimate(floored) == "51.6 ± 0.4 (SE: the runs' own)"
    spread = estimate([40.0, 50.0])  # seeds far apart: their spread is the larger error
    assert with_sampling_floor(spread, [0.5, 0.5]) == spread
    assert with_sampling_floor(estimate([1.0, 2.0]), [0.5, None]) == estimate([1.0, 2.0])
    one = Estimate(50.0, 0.3, 1, "samples")  # one seed: its own error already
    assert with_sampling_floor(one, [0.3]) == one and with_sampling_floor(None, []) is None


def test_the_floor_restores_the_two_se_coverage_that_two_seeds_lose():
    """Runs with no seed-to-seed spread at all, each measured with sampling noise of SD 1:
    the mean of 2 runs is within 2 of its SEs of the truth ~95% of the time with the floor
    (the floor is the exact SE here), but only ~70% with the 2-seed spread alone (Student's t
    with 1 degree of freedom: P(|t| < 2) = 0.70)."""
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 1.0, size=(4000, 2))
    spread = [estimate(v) for v in values]
    floored = [with_sampling_floor(e, [1.0, 1.0]) for e in spread]
    def covered(ests):
        return float(np.mean([abs(e.mean) <= 2 * e.stderr for e in ests]))
    assert covered(spread) == pytest.approx(0.705, abs=0.03)
    assert covered(floored) >= 0.95
