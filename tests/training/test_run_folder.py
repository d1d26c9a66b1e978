"""The run folder as a user meets it: resume from the folder alone (its own config, safe
overrides only), finished runs, no run overwritten by accident (--overwrite, --new-version), and
the lock that keeps a second process out (and does not outlive a SIGKILLed one)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sigmavae.cli import main
from sigmavae.run import RunExistsError, RunLock, RunLockedError, load_checkpoint, run_outputs
from sigmavae.run.lock import LOCK_NAME
from sigmavae.training import TrainConfig, Trainer

# 64 training images in batches of 32: 2 steps an epoch (the defaults would make 13).
TINY = ["--data", "frey", "--train-subset", "64", "--val-subset", "16", "--batch-size", "32",
        "--epochs", "1", "--no-progress", "--accelerator", "cpu", "--no-speed-hint",
        "--num-samples", "4"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run (copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(tmp_path: Path, finished: Path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: size and modification time (what 'untouched' means)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))


def test_resume_continues_with_the_runs_own_config(run, capsys):
    """No --config and none of the run's flags: the saved config (64 images, batches of 32),
    not the defaults; --epochs and --log-every-n-steps may change and are said in one line."""
    capsys.readouterr()
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["train", "--resume", "auto", "--out", str(run), "--epochs", "2",
                 "--log-every-n-steps", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"resuming {run} with its saved config ({ckpt}); changed: epochs 1 -> 2, "
                     "log_every_n_steps 10 -> 1")
    assert [(r["epoch"], r["step"]) for r in _rows(run / "epochs.csv")] == [("1", "2"), ("2", "4")]
    assert [r["step"] for r in _rows(run / "steps.csv")] == ["3", "4"]  # logged every step now
    saved = load_checkpoint(ckpt)["config"]
    assert (saved["train_subset"], saved["batch_size"], saved["epochs"]) == (64, 32, 2)
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    # a checkpoint alone names its run folder (DIR/checkpoints/last.ckpt: DIR)
    assert main(["train", "--resume", str(ckpt)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"run {run} is finished: 2 of 2 epochs; nothing to do — raise --epochs to continue")


def test_fixed_keys_are_refused_and_nothing_is_touched(run, tmp_path, capsys):
    before = _files(run)
    assert main(["train", "--resume", "auto", "--out", str(run), "--epochs", "2", "--lr",
                 "0.002", "--batch-size", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"sigmavae train: error: cannot resume {run} with batch_size 16 (the run's: 32), lr "
        "0.002 (the run's: 0.001): fixed for a run; leave them out")
    config = tmp_path / "c.yaml"  # a config file given with --resume: the same rules
    config.write_text("data: frey\nlr: 0.01\n")
    assert main(["train", "--config", str(config), "--resume", "auto", "--out", str(run)]) == 2
    assert "with lr 0.01 (the run's: 0.001): fixed" in capsys.readouterr().err
    assert _files(run) == before


def test_a_finished_run_says_so_and_touches_nothing(run, tmp_path, capsys):
    before = _files(run)
    config = tmp_path / "c.yaml"  # the run's own values: accepted
    config.write_text("data: frey\nbatch_size: 32\ntrain_subset: 64\nepochs: 1\n")
    for extra in ([], ["--config", str(config)]):
        capsys.readouterr()
        assert main(["train", "--resume", "auto", "--out", str(run), *extra]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"resuming {run} with its saved config ({run / 'checkpoints' / 'last.ckpt'})",
            f"run {run} is finished: 1 of 1 epochs; nothing to do — raise --epochs to continue"]
    assert _files(run) == before


def test_a_run_is_not_overwritten_without_asking(run, capsys):
    before = _files(run)
    assert main(["train", *TINY, "--out", str(run)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"sigmavae train: error: {run} already holds a run (checkpoints, config.json, "
        "final.json, epochs.csv, ...); continue it with --resume auto, train a new version with "
        f"--new-version (into {run}-2), or replace it with --overwrite"]
    config = TrainConfig(data="frey", train_subset=64, batch_size=32, out=str(run),
                         progress=False)
    with pytest.raises(RunExistsError, match="already holds a run"):  # the library too
        Trainer(config).fit()
    assert _files(run) == before


def _scalar_steps(events: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(events))
    reader.Reload()
    return {tag: [e.step for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def test_overwrite_replaces_the_old_run_cleanly(run, capsys):
    (run / "notes.txt").write_text("mine")
    old_events = {p.name for p in (run / "tensorboard").iterdir()}
    old_run = run_outputs(run)
    capsys.readouterr()
    assert main(["train", *TINY, "--seed", "5", "--log-every-n-steps", "1", "--out", str(run),
                 "--overwrite"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"--overwrite: removed the previous run's {', '.join(old_run)} from {run}")
    assert {"checkpoints", "tensorboard", "final.json"} <= set(old_run)
    events = [p for p in (run / "tensorboard").rglob("*") if p.is_file()]
    assert len(events) == 1 and events[0].name not in old_events  # no stale event file
    steps = _scalar_steps(events[0])
    assert steps and all(s == sorted(set(s)) for s in steps.values())  # no step twice
    assert json.loads((run / "config.json").read_text())["seed"] == 5
    assert len(_rows(run / "epochs.csv")) == 1 and (run / "notes.txt").read_text() == "mine"


def test_new_version_trains_beside_the_old_run(run, capsys):
    before = _files(run)
    capsys.readouterr()
    assert main(["train", *TINY, "--out", str(run), "--new-version"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{run} holds a run: training a new version in {run}-2")
    assert (run.parent / "run-2" / "checkpoints" / "last.ckpt").is_file()
    assert _files(run) == before


HOLD = ("import sys, time\nfrom sigmavae.run.lock import RunLock\n"
        "lock = RunLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(600)\n")


def test_a_second_process_is_refused_and_a_killed_ones_lock_recovered(tmp_path, capsys):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert main(["train", *TINY, "--out", str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(
            f"sigmavae train: error: {folder} is in use by process {holder.pid} on "
            f"{socket.gethostname()} since ")
        config = TrainConfig(data="frey", out=str(folder), progress=False)
        with pytest.raises(RunLockedError):  # the library too, before it loads anything
            Trainer(config).fit()
        assert [p.name for p in folder.iterdir()] == [LOCK_NAME]
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait(timeout=60)
    assert (folder / LOCK_NAME).is_file()  # the file stays behind, its lock does not
    with RunLock(folder) as lock:
        assert lock.held
    assert not (folder / LOCK_NAME).exists()  # released (and removed)
