"""The two-standard-error rule behind every verdict, against closed forms."""

from __future__ import annotations

import math

import pytest

from sigmavae.experiments import claims
from sigmavae.experiments.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    Estimate,
    all_of,
    estimate,
    less_than,
)


def test_estimate_is_mean_and_standard_error():
    est = estimate([1.0, 2.0, 6.0])
    assert est.mean == pytest.approx(3.0)
    assert est.stderr == pytest.approx(math.sqrt(7.0 / 3.0))  # std 7^0.5 (n-1), / sqrt 3
    assert estimate([2.5]) == Estimate(2.5, None, 1)
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
    from sigmavae.experiments.definitions import EXPERIMENTS

    ids = [c.id for c in claims.CLAIMS]
    assert len(ids) == len(set(ids)) >= 10
    for claim in claims.CLAIMS:
        assert claim.experiment in EXPERIMENTS
        assert "2 SE" in claim.rule or "2-SE" in claim.rule
