"""``sigmavae experiment NAME --status`` (sigmavae.experiments.progress): each run's state from
its folder alone, and the training time left from the finished runs' times."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from sigmavae.experiments.driver import run_experiments
from sigmavae.experiments.presets import ExperimentError
from sigmavae.experiments.progress import (
    EVALUATED,
    STOPPED,
    TO_RUN,
    TRAINED,
    TRAINING,
    describe_progress,
    run_progress,
)
from sigmavae.experiments.runs import RunSpec, RunStore
from sigmavae.run import RunLock


def _spec(head: str, seed: int) -> RunSpec:
    return RunSpec(head, f"{head} VAE", {"likelihood": head, "epochs": 4}, seed)


def _folder(store: RunStore, spec: RunSpec, *, epochs: int = 0, checkpoint: bool = False,
            final: bool = False, evaluated: bool = False, seconds: float | None = None,
            epoch_seconds: float = 0.0):
    folder = store.folder(spec)
    folder.mkdir(parents=True)
    (folder / "train.yaml").write_text(yaml.safe_dump({**spec.train, "seed": spec.seed}))
    if epochs:
        (folder / "epochs.csv").write_text("epoch,step,seconds\n" + "".join(
            f"{e},{10 * e},{epoch_seconds}\n" for e in range(1, epochs + 1)))
    if checkpoint:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    if final:
        (folder / "final.json").write_text("{}")
    if evaluated:
        (folder / "eval.json").write_text("{}")
    if seconds is not None:
        (folder / "train_seconds.txt").write_text(f"{seconds}\n")
    return folder


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs", log=lambda m: None)


def test_each_state_is_read_from_the_folder(store):
    done = _spec("gaussian", 0)
    _folder(store, done, epochs=4, checkpoint=True, final=True, evaluated=True, seconds=1000)
    trained = _spec("gaussian", 1)
    _folder(store, trained, epochs=4, checkpoint=True, final=True, seconds=1400)
    stopped = _spec("gaussian", 2)
    _folder(store, stopped, epochs=1, checkpoint=True)
    live = _spec("optimal_sigma", 0)
    with RunLock(_folder(store, live, epochs=3, checkpoint=True)):  # this process trains it
        assert run_progress(store, live).state == TRAINING
    assert run_progress(store, live).state == STOPPED  # released: no one trains it now
    assert [run_progress(store, s).state for s in (done, trained, stopped, _spec("x", 0))] == [
        EVALUATED, TRAINED, STOPPED, TO_RUN]
    assert run_progress(store, stopped).fraction_left == pytest.approx(0.75)


def test_a_lock_file_left_by_a_killed_process_is_not_a_live_run(store):
    spec = _spec("gaussian", 0)
    folder = _folder(store, spec, epochs=2, checkpoint=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (folder / ".lock").write_text(json.dumps({"pid": int(gone.stdout), "host":
                                              socket.gethostname()}))
    assert run_progress(store, spec).state == STOPPED
    (folder / ".lock").write_text(json.dumps({"pid": os.getpid(), "host":
                                              socket.gethostname()}))
    assert run_progress(store, spec).state == TRAINING  # a live process named in the note
    (folder / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    assert run_progress(store, spec).state == TRAINING  # another host: cannot be checked


def test_the_time_left_comes_from_the_finished_runs_of_the_same_head(store):
    _folder(store, _spec("gaussian", 0), epochs=4, final=True, evaluated=True, seconds=1000)
    _folder(store, _spec("gaussian", 1), epochs=4, final=True, evaluated=True, seconds=3000)
    _folder(store, _spec("categorical", 5), epochs=4, final=True, evaluated=True, seconds=9000)
    _folder(store, _spec("gaussian", 2), epochs=1, checkpoint=True)  # 3/4 left: 0.75 x 2000
    specs = [_spec("gaussian", s) for s in range(3)] + [_spec("optimal_sigma", 0)]
    lines = describe_progress(store, specs, jobs=2)
    assert lines[0] == "4 runs: 2 evaluated, 1 stopped, 1 to run"
    assert "  gaussian-s2-" in lines[1] and lines[1].endswith(": stopped, epoch 1 of 4")
    assert lines[2].endswith(": to run")
    # 0.75 x 2000 s (gaussian's median) + 1 x 3000 s (the median of all three: no optimal
    # run has finished) = 4500 s = 1.25 run-hours, over 2 runs at once
    assert lines[-1].startswith("training left: about 0.6 h at 2 run(s) at once (1.2 "
                                "run-hours")
    assert "1 run(s) of a head with no finished or started run" in lines[-1]
    nothing = RunStore(store.root.parent / "empty", log=lambda m: None)
    assert describe_progress(nothing, specs, 1)[-1].startswith("time left: unknown")


def test_a_head_with_no_finished_run_is_timed_by_its_started_runs_epochs(store):
    _folder(store, _spec("gaussian", 0), epochs=4, final=True, evaluated=True, seconds=1000)
    # a categorical run 2 epochs of 4 in, 500 s each: 2000 s a run, 1000 s of it left
    _folder(store, _spec("categorical", 0), epochs=2, checkpoint=True, epoch_seconds=500)
    specs = [_spec("categorical", 0), _spec("categorical", 1), _spec("gaussian", 1)]
    line = describe_progress(store, specs, jobs=1)[-1]
    # 1000 + 2000 (the other categorical) + 1000 (gaussian's finished run) = 4000 s
    assert line.startswith("training left: about 1.1 h at 1 run(s) at once (1.1 run-hours")
    assert "counted at the median" not in line
    # with nothing finished at all, the timed epochs still give an estimate
    only = RunStore(store.root.parent / "only", log=lambda m: None)
    _folder(only, _spec("categorical", 0), epochs=1, checkpoint=True, epoch_seconds=900)
    line = describe_progress(only, specs, jobs=1)[-1]
    # 0.75 x 3600 + 3600 + 3600 (gaussian: no run of its own, the median of the timed ones)
    assert line.startswith("training left: about 2.8 h at 1 run(s) at once (2.8 run-hours")
    assert "1 run(s) of a head with no finished or started run" in line


def test_status_reads_no_data_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGMAVAE_SHARED_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    said: list[str] = []
    run_experiments("beta-sweep", preset="paper-length", status=True, runs_dir=tmp_path / "r",
                    out=tmp_path / "out", log=said.append)
    assert said[0].startswith("experiment beta-sweep: 25 runs: 25 to run")
    assert not (tmp_path / "out").exists() and not (tmp_path / "r").exists()
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ExperimentError, match="--collect and --status exclude each other"):
        run_experiments("beta-sweep", collect=True, status=True, log=said.append)


def test_the_command_line_status(tmp_path, monkeypatch, capsys):
    from sigmavae.cli import main

    monkeypatch.setenv("SIGMAVAE_SHARED_DATA", str(tmp_path / "no-data"))
    assert main(["experiment", "variance-convergence", "--preset", "paper-length", "--status",
                 "--runs-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "experiment variance-convergence: 21 runs: 21 to run" in out
    assert "time left: unknown until a run in this runs folder has finished training" in out


def test_the_runs_are_listed_in_the_order_they_train(store):
    """As ``RunStore.execute`` takes them: a stopped run first, then seed by seed."""
    specs = [_spec(head, seed) for head in ("gaussian", "optimal_sigma") for seed in range(3)]
    _folder(store, specs[2], epochs=1, checkpoint=True)  # gaussian seed 2: stopped
    listed = [line.split()[0] for line in describe_progress(store, specs, jobs=1)[1:-1]]
    assert listed == [specs[i].run_id for i in (2, 0, 3, 1, 4, 5)]


def test_runs_started_on_a_slower_machine_scale_the_finished_runs_times(store):
    # records of runs finished elsewhere (bf16 hardware): 1000 s a run
    _folder(store, _spec("gaussian", 0), epochs=4, final=True, evaluated=True, seconds=1000)
    _folder(store, _spec("categorical", 0), epochs=4, final=True, evaluated=True, seconds=4000)
    # here a gaussian run takes 750 s an epoch: 3000 s a run, 3x the finished one's; stopped
    # once, it wrote its seconds so far (not a whole run's time)
    _folder(store, _spec("gaussian", 1), epochs=2, checkpoint=True, epoch_seconds=750,
            seconds=1500)
    specs = [_spec("gaussian", 1), _spec("gaussian", 2), _spec("categorical", 1)]
    line = describe_progress(store, specs, jobs=1)[-1]
    # 0.5 x 3000 (the started run: its own epochs) + 3 x 1000 + 3 x 4000 = 16500 s
    assert line.startswith("training left: about 4.6 h at 1 run(s) at once (4.6 run-hours")
    assert "scaled by 3: the pace of the runs started here" in line
    # at the finished runs' own pace nothing is scaled, and the line does not say so
    _folder(store, _spec("gaussian", 2), epochs=1, checkpoint=True, epoch_seconds=250)
    line = describe_progress(store, [_spec("gaussian", 2)], jobs=1)[-1]
    assert "scaled" not in line and "(0.2 run-hours" in line


def test_a_head_started_here_is_timed_by_its_own_epochs_not_by_the_common_pace(store):
    # finished elsewhere: gaussian 1000 s a run, categorical 4000 s
    _folder(store, _spec("gaussian", 0), epochs=4, final=True, evaluated=True, seconds=1000)
    _folder(store, _spec("categorical", 0), epochs=4, final=True, evaluated=True, seconds=4000)
    # here, half-way: gaussian 500 s an epoch (2000 s a run: 2x), categorical 4000 s (4x), so
    # the common pace is 3x; each head's own runs here say better what it costs here
    _folder(store, _spec("gaussian", 1), epochs=2, checkpoint=True, epoch_seconds=500)
    _folder(store, _spec("categorical", 1), epochs=2, checkpoint=True, epoch_seconds=4000)
    specs = [_spec("gaussian", 1), _spec("gaussian", 2), _spec("categorical", 1)]
    line = describe_progress(store, specs, jobs=1)[-1]
    # 0.5 x 2000 + 2000 + 0.5 x 16000 = 11000 s (at the common pace: 10500 s)
    assert line.startswith("training left: about 3.1 h at 1 run(s) at once (3.1 run-hours")
    assert "scaled by 3" in line
