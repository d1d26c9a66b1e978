"""Per-run instruments of the experiments: censored convergence steps, bracketed I_e."""

from __future__ import annotations

import math
from pathlib import Path

from sigmavae.experiments.definitions import (
    marginal_kl_bounds,
    mutual_info_bounds,
    steps_to_reach,
)
from sigmavae.experiments.runs import RunResult, RunSpec


def _run(tmp: Path, sigmas: list[float] | None = None, mi: dict | None = None) -> RunResult:
    folder = tmp / "run"
    folder.mkdir(exist_ok=True)
    if sigmas is not None:
        rows = ["step,sigma"] + [f"{10 * (i + 1)},{s}" for i, s in enumerate(sigmas)]
        (folder / "steps.csv").write_text("\n".join(rows) + "\n")
    evaluation = {"metrics": {"mi": {"available": True, **mi}}} if mi else {}
    return RunResult(RunSpec("r", "r", {}, 0), folder, {}, evaluation)


def test_steps_to_reach_is_a_measurement_once_sigma_stays_near(tmp_path):
    run = _run(tmp_path, [1.0, 0.5, 0.105, 0.2, 0.104, 0.1, 0.099])
    # within 10% of 0.1 for good from step 50 on (step 30 leaves it again)
    assert steps_to_reach(run, 0.1) == (50.0, 50.0)


def test_steps_to_reach_is_censored_when_sigma_never_gets_there(tmp_path):
    run = _run(tmp_path, [1.0, 0.8, 0.6, 0.5])
    low, high = steps_to_reach(run, 0.1)
    assert low == 41.0 and high is None  # at least the run's last step + 1


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
