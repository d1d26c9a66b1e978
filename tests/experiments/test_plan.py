"""``sigmavae experiment NAME --plan``: written in an empty folder on a machine with no data and
no cache, everything under ``--out``, scripts that run the plan's lines (a SLURM array task, a
local loop), and a ``--prepare`` step that makes the very FID classifier the plan names."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import sigmavae.experiments.driver as driver
import sigmavae.experiments.presets as presets
import sigmavae.metrics.fid_classifier as fid_classifier
from sigmavae.cli import main
from sigmavae.experiments.driver import run_experiments
from sigmavae.experiments.features import classifier_file
from sigmavae.experiments.presets import PRESETS, ExperimentError, default_data

SCRIPTS = ("prepare.sh", "slurm-array.sh", "run-local.sh", "run-task.sh", "collect.sh")


def _forbidden(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"--plan {what}")
    return fail


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """``sigmavae experiment beta-sweep --preset quick --plan --out plan``, run in an empty
    folder with no shared data, no data root and an empty cache and home."""
    tmp = tmp_path_factory.mktemp("empty-machine")
    for folder in ("work", "cache", "home", "no-data"):
        (tmp / folder).mkdir()
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("SIGMAVAE_SHARED_DATA", str(tmp / "no-data"))
        mp.setenv("SIGMAVAE_DATA", str(tmp / "no-data"))
        mp.setenv("SIGMAVAE_CACHE", str(tmp / "cache"))
        mp.setenv("HOME", str(tmp / "home"))
        mp.chdir(tmp / "work")
        # reading the data or training a classifier would fail here anyway; make it loud
        mp.setattr(presets, "extract_cifar_jpeg", _forbidden("extracted the data"))
        mp.setattr(driver, "fid_classifier", _forbidden("looked for the FID classifier"))
        mp.setattr(fid_classifier, "train_classifier", _forbidden("trained a classifier"))
        start = time.perf_counter()
        code = main(["experiment", "beta-sweep", "--preset", "quick", "--plan", "--out", "plan"])
        seconds = time.perf_counter() - start
    finally:
        mp.undo()
    assert code == 0
    return tmp, tmp / "work" / "plan", seconds


def _lines(plan: Path, name: str = "commands.txt") -> list[str]:
    return (plan / name).read_text().splitlines()


def test_the_plan_reads_no_data_and_writes_only_under_out(planned):
    tmp, plan, seconds = planned
    assert seconds < 60  # no training: seconds (imports), not the classifier's minutes
    written = sorted(p for p in tmp.rglob("*") if p.is_file())
    assert written and all(plan in p.parents for p in written), written
    lines = _lines(plan)
    assert len(lines) == len(_lines(plan, "runs.txt")) == 21  # 7 configs x 3 seeds
    for line, run in zip(lines, _lines(plan, "runs.txt"), strict=True):
        train, evaluate = (shlex.split(part) for part in line.split(" && "))
        assert train == ["sigmavae", "train", "--config", f"{run}/train.yaml", "--resume", "auto"]
        assert evaluate[:3] == ["sigmavae", "eval", f"{run}/checkpoints/last.ckpt"]
        assert evaluate[-2:] == ["--out", f"{run}/eval.json"] and "--device" not in evaluate
        config = yaml.safe_load((plan / run / "train.yaml").read_text())
        # relative to the plan folder, where the scripts run; the data in the plan's cache
        assert config["out"] == run and config["data_root"] == "cache/cifar10-jpeg"
        assert "accelerator" not in config  # the device is each run's own choice (auto)
    for path in written:  # no path of this machine: the folder can be copied anywhere
        assert str(tmp) not in path.read_text(errors="replace"), path


def test_the_classifier_the_plan_names_is_the_one_prepare_makes_anywhere(planned, tmp_path,
                                                                         monkeypatch):
    _, plan, _ = planned
    named = {a.removeprefix("classifier:") for line in _lines(plan)
             for a in shlex.split(line) if a.startswith("classifier:")}
    # on the cluster, prepare.sh runs with SIGMAVAE_CACHE=PLAN/cache and extracts there
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cluster" / "plan" / "cache"))
    data = default_data(PRESETS["quick"], "svhn", prepare=False)
    assert named == {f"cache/fid-classifiers/{classifier_file(data, PRESETS['quick'])}"}


def test_the_scripts_are_bash_and_the_array_has_one_task_per_line(planned):
    _, plan, _ = planned
    for name in SCRIPTS:
        script = plan / name
        assert os.access(script, os.X_OK), name
        subprocess.run(["bash", "-n", str(script)], check=True)
    slurm = (plan / "slurm-array.sh").read_text()
    assert f"#SBATCH --array=0-{len(_lines(plan)) - 1}\n" in slurm
    for option in ("--time=", "--cpus-per-task=", "--gres=gpu:1"):  # present, to be edited
        assert re.search(rf"^##?SBATCH {option}", slurm, re.M), option
    assert "set -euo pipefail" in slurm and (plan / "logs").is_dir()


@pytest.fixture
def shim(tmp_path):
    """A ``sigmavae`` on PATH that records its folder and arguments, one call per line."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.tsv"
    bin_dir.mkdir()
    (bin_dir / "sigmavae").write_text(
        '#!/bin/sh\nline="$PWD|$SIGMAVAE_CACHE"\nfor a in "$@"; do line="$line\t$a"; done\n'
        'printf "%s\\n" "$line" >> "$CALLS"\n')
    (bin_dir / "sigmavae").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "CALLS": str(calls)}
    env.pop("SLURM_ARRAY_TASK_ID", None)
    env.pop("SIGMAVAE_CACHE", None)

    def recorded() -> list[tuple[str, list[str]]]:
        if not calls.is_file():
            return []
        rows = [line.split("\t") for line in calls.read_text().splitlines()]
        calls.unlink()
        return [(row[0], row[1:]) for row in rows]

    return env, recorded


def _bash(script: Path, *args: str, env: dict[str, str], cwd: Path,
          **more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], env={**env, **more}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def _calls_of(line: str) -> list[list[str]]:
    return [shlex.split(part)[1:] for part in line.split(" && ")]


def test_an_array_task_runs_its_line_from_the_plan_folder(planned, shim, tmp_path):
    _, plan, _ = planned
    copy = tmp_path / "plan"  # the plan as copied to a cluster
    shutil.copytree(plan, copy)
    env, recorded = shim
    lines = _lines(copy)
    # before prepare.sh: every task says so, and runs nothing
    early = _bash(copy / "slurm-array.sh", env=env, cwd=tmp_path, SLURM_ARRAY_TASK_ID="0")
    assert early.returncode == 2 and "prepare.sh" in early.stderr and recorded() == []
    prepared = _bash(copy / "prepare.sh", env=env, cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr
    assert recorded() == [(f"{copy}|{copy}/cache",
                           ["experiment", "beta-sweep", "--preset", "quick", "--prepare"])]
    # sbatch runs a copy of the script, in the folder it was submitted from
    spool = tmp_path / "spool"
    spool.mkdir()
    shutil.copy(copy / "slurm-array.sh", spool / "slurm_script")
    first = _bash(spool / "slurm_script", env=env, cwd=copy, SLURM_ARRAY_TASK_ID="0",
                  SLURM_SUBMIT_DIR=str(copy))
    assert first.returncode == 0, first.stderr
    calls = recorded()
    assert [args for _, args in calls] == _calls_of(lines[0])
    assert {folder.partition("|")[0] for folder, _ in calls} == {str(copy)}
    last = _bash(copy / "slurm-array.sh", env=env, cwd=tmp_path,
                 SLURM_ARRAY_TASK_ID=str(len(lines) - 1))
    assert last.returncode == 0 and [a for _, a in recorded()] == _calls_of(lines[-1])
    # a task past the end, or a finished run, runs nothing
    past = _bash(copy / "slurm-array.sh", env=env, cwd=tmp_path,
                 SLURM_ARRAY_TASK_ID=str(len(lines)))
    assert past.returncode == 2 and "0 to 20" in past.stderr and recorded() == []
    run = _lines(copy, "runs.txt")[0]
    (copy / run / "eval.json").write_text("{}")
    again = _bash(copy / "slurm-array.sh", env=env, cwd=tmp_path, SLURM_ARRAY_TASK_ID="0")
    assert again.returncode == 0 and "evaluated already" in again.stdout and recorded() == []


def test_the_local_loop_runs_every_line_then_collects(planned, shim, tmp_path):
    _, plan, _ = planned
    copy = tmp_path / "plan"
    shutil.copytree(plan, copy)
    env, recorded = shim
    done = _bash(copy / "run-local.sh", "2", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    calls = [args for _, args in recorded()]
    prepare, runs, collect = calls[0], calls[1:-1], calls[-1]
    assert prepare[-1] == "--prepare"
    expected = [call for line in _lines(copy) for call in _calls_of(line)]
    assert sorted(runs) == sorted(expected)  # two at a time: in any order
    for run in _lines(copy, "runs.txt"):  # each line in order: train, then evaluate
        train = runs.index(["train", "--config", f"{run}/train.yaml", "--resume", "auto"])
        assert train < next(i for i, c in enumerate(runs) if c[:2] == ["eval", f"{run}/"
                                                                            "checkpoints/last.ckpt"])
    assert collect == ["experiment", "beta-sweep", "--preset", "quick", "--collect",
                       "--runs-dir", "runs", "--out", "reports"]
    assert "--collect --runs-dir runs --out reports" in (copy / "collect.sh").read_text()
    bad = _bash(copy / "run-local.sh", "two", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "JOBS must be a whole number" in bad.stderr


def test_the_plan_is_printed_with_the_collect_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "variance-convergence", "--preset", "quick", "--seeds", "1",
                 "--plan", "--out", "p"]) == 0
    out = capsys.readouterr().out
    assert "planned 7 runs in p/" in out  # 7 configurations, 1 seed
    assert "sbatch --dependency=afterok:$jid slurm-array.sh" in out
    assert ("cd p && sigmavae experiment variance-convergence --preset quick --seeds 1 "
            "--collect --runs-dir runs --out reports") in out


def test_a_plan_refuses_paths_that_would_not_travel(tmp_path):
    with pytest.raises(ExperimentError, match="--runs-dir: a plan keeps its runs"):
        run_experiments("beta-sweep", out=tmp_path, runs_dir=tmp_path / "r", plan=True,
                        log=lambda m: None)
    with pytest.raises(ExperimentError, match="--data-root: expected an absolute path"):
        run_experiments("beta-sweep", out=tmp_path, data="folder", data_root="images",
                        plan=True, log=lambda m: None)


def test_records_are_refused_where_no_run_is_evaluated(tmp_path):
    for mode in ("plan", "prepare"):
        with pytest.raises(ExperimentError, match=f"--records rec: --{mode} evaluates no run"):
            run_experiments("beta-sweep", out=tmp_path, records="rec", log=lambda m: None,
                            **{mode: True})


def test_only_plans_the_runs_of_the_rows_asked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run_experiments("beta-sweep", preset="quick", seeds=2, plan=True, out="p",
                              only=["learned_sigma", "optimal_sigma"], log=lambda m: None)
    lines = _lines(tmp_path / "p")
    assert len(lines) == 4 == outcome.plan.runs  # 2 rows x 2 seeds, not 7 x 2
    assert all("learned_sigma-s" in line or "optimal_sigma-s" in line for line in lines)
    with pytest.raises(ExperimentError, match=r"--only gaussian: gaussian is not a row; the "
                                              r"rows of beta-sweep: beta_vae_0.001, "):
        run_experiments("beta-sweep", preset="quick", plan=True, out="q", only=["gaussian"],
                        log=lambda m: None)
    with pytest.raises(ExperimentError, match="--only: no rows given"):
        run_experiments("beta-sweep", preset="quick", plan=True, out="q", only=[],
                        log=lambda m: None)
    with pytest.raises(ExperimentError, match="--only: --collect trains nothing"):
        run_experiments("beta-sweep", collect=True, only=["gaussian"], log=lambda m: None)


def _labelled_folder(root: Path) -> Path:
    """Two classes of 24 tiny RGB images each (a labelled image folder)."""
    from PIL import Image

    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / label).mkdir(parents=True)
        for i in range(24):
            shade = tuple(min(255, c + 2 * i) for c in colour)
            Image.new("RGB", (8, 8), shade).save(root / label / f"{i}.png")
    return root


def test_prepare_trains_the_classifier_the_plan_named(tmp_path, monkeypatch):
    images = _labelled_folder(tmp_path / "images")
    preset = replace(PRESETS["quick"], name="tiny", seeds=1, classifier_epochs=1,
                     classifier_images=48)
    options = {"labels": True}
    outcome = run_experiments("variance-convergence", preset=preset, out=tmp_path / "plan",
                              data="folder", data_root=str(images), data_options=options,
                              plan=True, log=lambda m: None)
    assert outcome.plan is not None
    named = {a.removeprefix("classifier:") for line in _lines(outcome.plan.folder)
             for a in shlex.split(line) if a.startswith("classifier:")}
    assert len(named) == 1 and not (tmp_path / "plan" / next(iter(named))).exists()
    assert "--data-option labels=true" in (tmp_path / "plan" / "prepare.sh").read_text()
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "plan" / "cache"))
    messages: list[str] = []
    run_experiments("variance-convergence", preset=preset, data="folder", data_root=str(images),
                    data_options=options, prepare=True, log=messages.append)
    assert (tmp_path / "plan" / next(iter(named))).is_file()
    assert any("FID features ready: classifier:" in m for m in messages)


def test_unlabelled_data_is_planned_with_pixel_features(tmp_path):
    outcome = run_experiments("variance-convergence", preset="quick", seeds=1,
                              out=tmp_path / "plan", data="frey", plan=True, log=lambda m: None)
    assert outcome.plan is not None
    assert all("--fid-features pixels" in line for line in _lines(outcome.plan.folder))
