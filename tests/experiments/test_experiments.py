"""End to end: a tiny experiment writes a report, --plan/--collect give the same report, an
interrupted experiment resumes without rerunning finished runs."""

from __future__ import annotations

import csv
import json
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sigmavae.cli import main
from sigmavae.experiments.driver import run_experiments
from sigmavae.experiments.framework import EXPERIMENTS, register_experiment
from sigmavae.experiments.heads import LEARNED, OPTIMAL
from sigmavae.experiments.presets import PRESETS, ExperimentError
from sigmavae.experiments.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from sigmavae.experiments.variance import VarianceConvergence

pytestmark = pytest.mark.slow

TINY = replace(PRESETS["quick"], name="tiny", train_subset=96, val_subset=32, epochs=1,
               batch_size=32, seeds=2, eval_images=48, fid_samples=24, mi_data=24,
               log_every_n_steps=1, notes=("tiny: a test",))
COMMAND = "sigmavae experiment two-heads --preset tiny"


class TwoHeads(VarianceConvergence):
    """The variance-convergence experiment reduced to its two sigma-VAEs (two configs)."""


    def runs(self, ctx):
        return [ctx.spec("svhn", head, seed) for head in (LEARNED, OPTIMAL)
                for seed in ctx.seeds()]


@pytest.fixture(scope="module")
def two_heads():
    register_experiment("two-heads", "test: learned against optimal sigma")(TwoHeads)
    yield "two-heads"
    EXPERIMENTS.unregister("two-heads")


def _run(tmp: Path, name: str, **kw):
    return run_experiments(name, preset=TINY, out=tmp / "out", runs_dir=tmp / "runs",
                           data="frey", command=COMMAND, log=lambda m: None, **kw)


def _without_wall_time(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "Wall time" not in line)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        # timings differ between two runs of the same thing
        rows = [{k: v for k, v in r.items() if not k.endswith("seconds")}
                for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r["run_id"])


@pytest.fixture(scope="module")
def direct(two_heads, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("direct")
    return tmp, _run(tmp, two_heads, threads=1)


def test_each_run_trains_with_the_threads_asked(direct):
    """--threads 1: every worker trains with one torch thread (on a 2-core machine the default
    would be 2), as each run's final.json records."""
    tmp, _ = direct
    finals = sorted((tmp / "runs").glob("*/final.json"))
    assert finals and len(finals) == len(list((tmp / "runs").iterdir()))
    for final in finals:
        assert json.loads(final.read_text())["ran_on"]["device"].endswith(", 1 threads")


def test_threads_are_checked(tmp_path):
    with pytest.raises(ExperimentError, match="--threads must be >= 1, got 0"):
        run_experiments("beta-sweep", preset=TINY, out=tmp_path, data="frey", threads=0)
    with pytest.raises(ExperimentError, match="--threads: --collect trains nothing"):
        run_experiments("beta-sweep", preset=TINY, out=tmp_path, data="frey", threads=1,
                        collect=True)


def test_report_has_table_verdict_and_png(direct):
    _, outcome = direct
    report = outcome.reports["two-heads"]
    text = report.read_text()
    assert "| decoder |" in text and "optimal sigma-VAE" in text
    assert "Optimal sigma reaches its variance in fewer steps" in text
    section = outcome.sections["two-heads"]
    assert section.verdicts[0].status in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
    png = report.parent / "variance-convergence.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert f"]({png.name})" in text
    rows = _csv_rows(report.parent / "runs.csv")
    assert len(rows) == 4 and {r["seed"] for r in rows} == {"0", "1"}
    assert all(float(r["neg_elbo_nats_per_image"]) for r in rows)  # numbers, not n/a
    assert COMMAND in text and "`frey`" in text


def test_plan_then_collect_gives_the_same_report(direct, two_heads, tmp_path, monkeypatch):
    tmp, outcome = direct
    folder = tmp_path / "plan"
    planned = run_experiments(two_heads, preset=TINY, out=folder, data="frey", plan=True,
                              log=lambda m: None)
    assert planned.plan is not None and planned.plan.folder == folder
    lines = planned.plan.commands.read_text().splitlines()
    assert len(lines) == 4 and all(" && sigmavae eval " in line for line in lines)
    # the same runs as the direct experiment's, in the plan's own folder
    assert all((folder / "runs" / p.name / "train.yaml").is_file()
               for p in (tmp / "runs").iterdir())
    monkeypatch.chdir(folder)  # where its scripts run each line
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the direct runs (--threads 1): the same float sums
    try:
        for line in lines:  # what a scheduler runs, one line per task
            for part in line.split(" && "):
                args = shlex.split(part)
                assert args[0] == "sigmavae" and "--device" not in args
                assert main(args[1:]) == 0
    finally:
        torch.set_num_threads(threads)
    monkeypatch.chdir(tmp_path)
    collected = run_experiments(two_heads, preset=TINY, out=tmp_path / "out",
                                runs_dir=folder / "runs", data="frey", command=COMMAND,
                                log=lambda m: None, collect=True)
    direct_text = outcome.reports["two-heads"].read_text()
    assert (_without_wall_time(collected.reports["two-heads"].read_text())
            == _without_wall_time(direct_text))
    assert (_csv_rows(collected.reports["two-heads"].parent / "runs.csv")
            == _csv_rows(outcome.reports["two-heads"].parent / "runs.csv"))


def test_interrupted_experiment_resumes_without_rerunning(direct, two_heads, tmp_path):
    tmp, _ = direct
    runs = sorted((tmp / "runs").iterdir())
    # copy three finished runs; make one of them "interrupted after training"; the fourth is new
    import shutil

    for run in runs[:3]:
        shutil.copytree(run, tmp_path / "runs" / run.name)
    (tmp_path / "runs" / runs[1].name / "eval.json").unlink()
    finished = tmp_path / "runs" / runs[0].name / "final.json"
    before = finished.stat().st_mtime_ns
    trained = tmp_path / "runs" / runs[1].name / "final.json"
    trained_before = trained.stat().st_mtime_ns
    started = tmp_path / "runs" / runs[2].name  # killed after its last checkpoint
    (started / "final.json").unlink()
    (started / "eval.json").unlink()
    steps_before = (started / "steps.csv").read_text()
    outcome = _run(tmp_path, two_heads)
    assert (started / "final.json").is_file() and (started / "eval.json").is_file()
    assert (started / "steps.csv").read_text() == steps_before  # resumed, not restarted
    assert finished.stat().st_mtime_ns == before  # not retrained
    assert trained.stat().st_mtime_ns == trained_before  # evaluated only
    assert (tmp_path / "runs" / runs[1].name / "eval.json").is_file()
    assert len(_csv_rows(outcome.reports["two-heads"].parent / "runs.csv")) == 4


def test_unknown_experiment_is_one_line(capsys):
    assert main(["experiment", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuch" in err[0] and "beta-sweep" in err[0]


def test_plan_and_collect_exclude_each_other(tmp_path):
    with pytest.raises(ExperimentError, match="exclude"):
        run_experiments("beta-sweep", preset=TINY, out=tmp_path, plan=True, collect=True,
                        data="frey")


def test_records_alone_rebuild_the_report(direct, two_heads, tmp_path):
    tmp, outcome = direct
    records = tmp_path / "records"
    again = run_experiments(two_heads, preset=TINY, out=tmp_path / "first",
                            runs_dir=tmp / "runs", data="frey", command=COMMAND,
                            log=lambda m: None, collect=True, records=records)
    kept = sorted(p.name for p in records.iterdir())
    assert kept == sorted(p.name for p in (tmp / "runs").iterdir())
    for record in records.iterdir():  # small files only, and no machine paths in them
        assert not (record / "checkpoints").exists()
        assert {"final.json", "eval.json", "steps.csv", "train.yaml"} <= {
            p.name for p in record.iterdir()}
        for path in record.iterdir():
            if path.suffix in (".json", ".yaml", ".csv"):
                text = path.read_text()
                assert str(tmp) not in text and str(Path.home()) not in text, path
    rebuilt = run_experiments(two_heads, preset=TINY, out=tmp_path / "second",
                              runs_dir=records, data="frey", command=COMMAND,
                              log=lambda m: None, collect=True)
    assert (_without_wall_time(rebuilt.reports["two-heads"].read_text())
            == _without_wall_time(again.reports["two-heads"].read_text())
            == _without_wall_time(outcome.reports["two-heads"].read_text()))
    assert (_csv_rows(rebuilt.reports["two-heads"].parent / "runs.csv")
            == _csv_rows(outcome.reports["two-heads"].parent / "runs.csv"))


def test_every_verdict_states_its_budget_against_the_paper(direct):
    _, outcome = direct
    verdict = outcome.sections["two-heads"].verdicts[0]
    # the tiny preset trains 3 steps per run: far from App. B's 5,730
    assert "3 Adam steps per run" in verdict.budget and "reduced budget" in verdict.budget
    assert "paper: SVHN at 28x28" in verdict.budget
    assert "budget of the runs (vs the paper)" in outcome.reports["two-heads"].read_text()


@pytest.mark.parametrize(("name", "fewer"), [
    ("decoders", "1 seed for the categorical (256-way) and the logistic mixture (heavy heads"),
    ("discretized", "1 seed for the categorical (256-way) (a heavy head"),
    ("beta-sweep", None)])
def test_the_seeds_line_names_the_heavy_heads_with_fewer_seeds(tmp_path, name, fewer):
    """One line per report for the seeds: the preset's, and where an experiment has heavy heads
    with fewer (paper-length: one), which and what their ± then leaves out; an experiment
    without them says nothing of them. Collected from an empty runs folder: no data read."""
    outcome = run_experiments(name, preset="paper-length", out=tmp_path / "out",
                              runs_dir=tmp_path / "runs", collect=True, log=lambda m: None)
    seeds = [line for line in outcome.reports[name].read_text().splitlines()
             if line.startswith("- Seeds")]
    assert len(seeds) == 1 and seeds[0].startswith("- Seeds: 3 per configuration (0..2)")
    if fewer is None:
        assert "heavy" not in seeds[0]
    else:
        assert fewer in seeds[0] and "leaves out the seed-to-seed spread" in seeds[0]


def test_reevaluate_replaces_one_metric_from_the_checkpoints_and_keeps_the_rest(
        direct, two_heads, tmp_path):
    """--reevaluate fid: each run with its checkpoint gets its FID evaluated again (the same
    number: same checkpoint, seed and samples; now with the bootstrap error), every other
    metric kept as it was, the seconds added; a record without a checkpoint keeps its FID and
    is named."""
    import shutil

    tmp, _ = direct
    runs = sorted((tmp / "runs").iterdir())
    for run in runs:
        shutil.copytree(run, tmp_path / "runs" / run.name)
    copies = sorted((tmp_path / "runs").iterdir())
    before = {run.name: json.loads((run / "eval.json").read_text()) for run in copies}
    for run in copies:  # an older evaluation: a marked FID without the bootstrap error
        stale = json.loads((run / "eval.json").read_text())
        stale["metrics"]["fid"] = {**stale["metrics"]["fid"], "fid": -1.0}
        stale["metrics"]["fid"].pop("fid_bootstrap_stderr", None)
        (run / "eval.json").write_text(json.dumps(stale))
    record = copies[0]
    shutil.rmtree(record / "checkpoints")
    seconds = {run.name: float((run / "eval_seconds.txt").read_text()) for run in copies}
    lines: list[str] = []
    run_experiments(two_heads, preset=TINY, out=tmp_path / "out", runs_dir=tmp_path / "runs",
                    data="frey", command=COMMAND, log=lines.append, reevaluate=["fid"])
    for run in copies[1:]:
        now = json.loads((run / "eval.json").read_text())
        old = before[run.name]
        assert now["metrics"]["fid"]["fid"] == pytest.approx(old["metrics"]["fid"]["fid"],
                                                             rel=1e-6)
        assert now["metrics"]["fid"]["fid_bootstrap_stderr"] > 0
        assert {k: v for k, v in now["metrics"].items() if k != "fid"} == {
            k: v for k, v in old["metrics"].items() if k != "fid"}
        assert float((run / "eval_seconds.txt").read_text()) > seconds[run.name]
        assert "| FID |" in (run / "eval.md").read_text()
        assert any(line.startswith(f"  done  re-evaluation of {run.name} (fid)")
                   for line in lines)
    assert json.loads((record / "eval.json").read_text())["metrics"]["fid"]["fid"] == -1.0
    assert any(line.startswith(f"  kept  {record.name}: no checkpoint") for line in lines)
    report = (tmp_path / "out" / "two-heads" / "report.md").read_text()
    assert "--reevaluate" not in report


def test_reevaluate_names_unknown_metrics_and_excludes_other_modes(tmp_path):
    with pytest.raises(ExperimentError, match=r"--reevaluate: .*nosuch"):
        run_experiments("beta-sweep", preset=TINY, out=tmp_path, data="frey",
                        reevaluate=["nosuch"])
    with pytest.raises(ExperimentError, match="exclude"):
        run_experiments("beta-sweep", preset=TINY, out=tmp_path, data="frey", collect=True,
                        reevaluate=["fid"])
