"""Per-run measures of the experiments: I_e and the marginal KL bracketed between their two
estimates."""

from __future__ import annotations

import math
from pathlib import Path

from sigmavae.experiments.measures import marginal_kl_bounds, mutual_info_bounds
from sigmavae.experiments.runs import RunResult, RunSpec


def _run(tmp: Path, mi: dict) -> RunResult:
    """A run whose evaluation holds the mutual-information record ``mi``."""
    folder = tmp / "run"
    folder.mkdir(exist_ok=True)
    evaluation = {"metrics": {"mi": {"available": True, **mi}}}
    return RunResult(RunSpec("r", "r", {}, 0), folder, {}, evaluation)


def test_saturated_information_is_bracketed_by_the_leave_one_out_estimate(tmp_path):
    log_n = math.log(10_000)
    rate = 50.0
    record = {"mutual_info_nats": log_n - 0.01, "mutual_info_upper_nats": 14.0,
              "marginal_kl_nats": rate - (log_n - 0.01), "rate_kl_nats": rate,
              "saturated": True}
    run = _run(tmp_path, mi=record)
    assert mutual_info_bounds(run) == (log_n - 0.01, 14.0)
    assert marginal_kl_bounds(run) == (rate - 14.0, rate - (log_n - 0.01))


def test_a_leave_one_out_estimate_beyond_the_rate_leaves_the_bracket_at_rate_and_zero(tmp_path):
    # narrow, far-apart posteriors: the leave-one-out estimate explodes; I_e <= rate and a KL
    # is >= 0, so the bracket is [in-sample, rate] and [0, rate - in-sample]
    record = {"mutual_info_nats": 9.21, "mutual_info_upper_nats": 17_406.0,
              "marginal_kl_nats": 92.55, "rate_kl_nats": 101.76, "saturated": True}
    run = _run(tmp_path, mi=record)
    assert mutual_info_bounds(run) == (9.21, 101.76)
    assert marginal_kl_bounds(run) == (0.0, 92.55)


def test_an_older_record_without_leave_one_out_is_open_where_saturated(tmp_path):
    saturated = _run(tmp_path, mi={"mutual_info_nats": 9.2, "marginal_kl_nats": 40.0,
                                   "saturated": True})
    assert mutual_info_bounds(saturated) == (9.2, None)
    assert marginal_kl_bounds(saturated) == (None, 40.0)
    below = _run(tmp_path, mi={"mutual_info_nats": 3.0, "marginal_kl_nats": 12.0,
                               "rate_kl_nats": 15.0, "saturated": False})
    assert mutual_info_bounds(below) == (3.0, 3.0)
    assert marginal_kl_bounds(below) == (12.0, 12.0)
