"""Per-run measures of the experiments: I_e and the marginal KL bracketed between their two
estimates, and FIDs compared only on one feature extractor."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sigmavae.experiments.framework import Results, csv_rows
from sigmavae.experiments.measures import fid, fid_draws, marginal_kl_bounds, mutual_info_bounds
from sigmavae.experiments.runs import RunResult, RunSpec, RunStore
from sigmavae.experiments.stats import fmt_estimate, less_than


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


def _store_run(store: RunStore, row: str, seed: int, data: str, fid: float,
               features: str, fid_se: float | None = None) -> RunSpec:
    """An evaluated run in ``store`` whose FID ``fid`` (bootstrap SE ``fid_se``) was computed
    on ``features``."""
    spec = RunSpec(row, row.title(), {"data": data, "likelihood": row}, seed)
    folder = store.folder(spec)
    folder.mkdir(parents=True)
    (folder / "final.json").write_text(json.dumps({"step": 10}))
    evaluation = {"metrics": {"fid": {"available": True, "fid": fid, "features": features,
                                      "fid_bootstrap_stderr": fid_se}}}
    (folder / "eval.json").write_text(json.dumps(evaluation))
    return spec


def test_fids_on_another_extractor_are_left_out_and_named(tmp_path):
    store = RunStore(tmp_path, log=lambda m: None)
    old, new, other_data = "classifier A (62.9%)", "classifier B (63.1%, sha256 1a2b)", "pixels"
    specs = [_store_run(store, "gaussian", 0, "cifar", 57.5, old),
             _store_run(store, "optimal", 0, "cifar", 46.7, old),
             _store_run(store, "optimal", 1, "cifar", 46.0, new),  # retrained elsewhere
             _store_run(store, "student_t", 0, "cifar", 40.0, new),
             _store_run(store, "gaussian", 1, "cifar", 55.0, old),
             # another data set's FIDs have their own features: not compared, not left out
             _store_run(store, "gaussian", 0, "frey", 9.0, other_data)]
    results = Results(store, specs)
    assert results.fid_features() == sorted([old, other_data])
    assert results.estimate("optimal", fid).mean == 46.7  # seed 1's 46.0 is not averaged in
    assert results.estimate("student_t", fid) is None  # its only FID is on the other features
    assert results.estimate("gaussian", fid).n == 3
    [note] = results.fid_notes()
    assert "2 run(s)" in note and new in note and "Student_T seed 0: 40.0" in note
    # the table cell shows what was left out beside what is compared, never as compared
    assert results.fid_cell("student_t") == "n/a; other features: 40.0 (not compared)"
    assert results.fid_cell("optimal") == "46.7 (1 seed); other features: 46.0 (not compared)"
    assert results.fid_cell("gaussian") == fmt_estimate(results.estimate("gaussian", fid))
    rows = {(r["row"], r["seed"], r["data"]): r for r in csv_rows(results)}
    # the CSV keeps every measured FID and says which the report compares
    assert rows["optimal", 1, "cifar"]["fid"] == 46.0
    assert rows["optimal", 1, "cifar"]["fid_in_report"] is False
    assert rows["gaussian", 0, "frey"]["fid_in_report"] is True


def test_one_extractor_everywhere_leaves_nothing_out(tmp_path):
    store = RunStore(tmp_path, log=lambda m: None)
    specs = [_store_run(store, "gaussian", s, "cifar", 50.0 + s, "A") for s in range(3)]
    results = Results(store, specs)
    assert results.fid_notes() == [] and results.estimate("gaussian", fid).n == 3


def test_a_one_seed_fid_carries_its_bootstrap_error_and_can_decide(tmp_path):
    """A heavy head's single run is compared with its FID's bootstrap SE over the samples and
    test images (said so); rows of several seeds keep the SE over seeds; a run on another
    extractor, or evaluated before the SE was measured, has none."""
    store = RunStore(tmp_path, log=lambda m: None)
    specs = [_store_run(store, "mixture", 0, "cifar", 50.0, "A", fid_se=0.3),
             *(_store_run(store, "gaussian", s, "cifar", 56.0 + s, "A", fid_se=0.3)
               for s in range(3)),
             _store_run(store, "old", 0, "cifar", 52.0, "A"),
             _store_run(store, "moved", 0, "cifar", 40.0, "B", fid_se=0.2)]
    results = Results(store, specs)
    mixture, gaussian = results.estimate("mixture", fid), results.estimate("gaussian", fid)
    assert (mixture.mean, mixture.stderr, mixture.n) == (50.0, 0.3, 1)
    assert fmt_estimate(mixture) == ("50.0 ± 0.3 (1 seed; SE over samples and test images, "
                                     "bootstrap)")
    assert gaussian.n == 3 and gaussian.stderr == pytest.approx(math.sqrt(1 / 3))  # seed SD 1
    assert less_than(mixture, gaussian) is True  # 7 apart, 2 SE = 1.3
    assert results.estimate("old", fid).stderr is None
    assert less_than(results.estimate("old", fid), gaussian) is None
    assert results.estimate("moved", fid) is None
    # a row whose other seeds were scored on another extractor: its one comparable seed
    # carries its own bootstrap error
    specs.append(_store_run(store, "mixture", 1, "cifar", 48.0, "B", fid_se=0.2))
    mixed = Results(store, specs).estimate("mixture", fid)
    assert (mixed.mean, mixed.stderr, mixed.n) == (50.0, 0.3, 1)


def test_a_mean_fid_over_seeds_carries_at_least_their_bootstrap_error(tmp_path):
    """Two seeds' FIDs 0.06 apart, each with a bootstrap SE of 0.57: the row's SE is the
    runs' own, not the 0.03 of their spread; a row whose seeds spread more keeps the spread."""
    store = RunStore(tmp_path, log=lambda m: None)
    specs = [_store_run(store, "bitwise", 0, "cifar", 51.54, "A", fid_se=0.57),
             _store_run(store, "bitwise", 1, "cifar", 51.60, "A", fid_se=0.57),
             *(_store_run(store, "gaussian", s, "cifar", 56.0 + s, "A", fid_se=0.3)
               for s in range(3))]
    results = Results(store, specs)
    bitwise, gaussian = results.estimate("bitwise", fid), results.estimate("gaussian", fid)
    assert bitwise.stderr == pytest.approx(0.57 / math.sqrt(2)) and bitwise.floored
    assert results.fid_cell("bitwise") == "51.6 ± 0.4 (SE: the runs' own)"
    assert gaussian.stderr == pytest.approx(math.sqrt(1 / 3)) and not gaussian.floored


def test_the_fid_of_draws_follows_its_runs_fid_extractor_and_bootstrap_error(tmp_path):
    """``fid_draws`` is read where measured, left out with the run's FID when that is on
    another extractor, and a one-seed row carries its bootstrap SE; runs.csv keeps the value."""
    store = RunStore(tmp_path, log=lambda m: None)
    specs = [_store_run(store, "mixture", 0, "cifar", 57.5, "A", fid_se=0.6),
             _store_run(store, "gaussian", 0, "cifar", 57.8, "A", fid_se=0.5),
             _store_run(store, "gaussian", 1, "cifar", 57.0, "A", fid_se=0.5),
             _store_run(store, "moved", 0, "cifar", 40.0, "B", fid_se=0.2)]
    for spec, draws in zip(specs, (44.6, None, None, 30.0), strict=True):
        if draws is None:
            continue
        path = store.folder(spec) / "eval.json"
        evaluation = json.loads(path.read_text())
        evaluation["metrics"]["fid_draws"] = {"available": True, "fid": draws,
                                              "fid_bootstrap_stderr": 0.3}
        path.write_text(json.dumps(evaluation))
    results = Results(store, specs)
    mixture = results.estimate("mixture", fid_draws)
    assert (mixture.mean, mixture.stderr, mixture.n) == (44.6, 0.3, 1)
    assert results.estimate("gaussian", fid_draws) is None  # evaluated before it existed
    assert results.estimate("moved", fid_draws) is None  # its FID's extractor is left out
    rows = {(r["row"], r["seed"]): r for r in csv_rows(results)}
    assert rows[("mixture", 0)]["fid_draws"] == 44.6 and rows[("gaussian", 1)]["fid_draws"] is None
    assert rows[("moved", 0)]["fid_draws"] == 30.0 and rows[("moved", 0)]["fid_in_report"] is False
