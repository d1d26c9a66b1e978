"""Run identity and records: ids that do not depend on the machine, records without its paths;
a run another process trains is left alone; the order runs train in."""

from __future__ import annotations

import contextlib

import pytest

from sigmavae.experiments import runs
from sigmavae.experiments.presets import ExperimentError, cache_dir
from sigmavae.experiments.runs import (
    RunElsewhere,
    RunSpec,
    portable,
    run_job,
    without_machine_paths,
)
from sigmavae.run import RunLock, RunLockedError


def test_a_run_in_the_cache_has_the_same_id_on_every_machine(tmp_path, monkeypatch):
    train = {"data": "folder", "data_options": {"labels": True}, "likelihood": "optimal_sigma"}
    ids = []
    for home in ("alice", "bob"):
        monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / home / ".cache" / "sigmavae"))
        root = cache_dir() / "cifar10-jpeg"
        spec = RunSpec("optimal_sigma", "optimal", {**train, "data_root": str(root)}, 0)
        assert portable(spec.train)["data_root"] == "<cache>/cifar10-jpeg"
        ids.append(spec.run_id)
    assert ids[0] == ids[1]
    # a user's own folder is part of what the run is
    a = RunSpec("r", "r", {**train, "data_root": str(tmp_path / "mine")}, 0)
    b = RunSpec("r", "r", {**train, "data_root": str(tmp_path / "theirs")}, 0)
    assert a.run_id != b.run_id


def test_records_keep_file_names_not_machine_paths(tmp_path):
    record = {"checkpoint": str(tmp_path / "runs" / "x" / "checkpoints" / "last.ckpt"),
              "options": {"fid_features": f"classifier:{tmp_path / 'cache' / 'c.safetensors'}"},
              "note": f"see {tmp_path / 'a' / 'b.png'} and runs/relative/kept.png",
              "steps": [1, 2]}
    clean = without_machine_paths(record)
    assert clean == {"checkpoint": "last.ckpt",
                     "options": {"fid_features": "classifier:c.safetensors"},
                     "note": "see b.png and runs/relative/kept.png", "steps": [1, 2]}


def test_a_run_another_process_trains_is_refused_untouched(tmp_path):
    """A second experiment reaching a run that a live process trains (its lock held) refuses it
    at once and writes nothing into it: not its log, not its training seconds."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "train.log").write_text("epoch 1/16: the live run's own line\n")
    (folder / "train_seconds.txt").write_text("1875.5\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    # the lock's holder has another open file of it, as another process would
    with RunLock(folder), pytest.raises(RunElsewhere,
                                        match=r"run run: training not started: .* is in use"):
        run_job(str(folder), None)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != ".lock"}
    assert after == before


def test_a_run_claimed_by_another_process_after_the_check_keeps_its_seconds(tmp_path, monkeypatch):
    """Two experiments reaching one run at once: both find the lock free, the other process
    claims it first and this one's trainer is refused at its claim. This one adds no seconds to
    the live run's training time and no traceback to its log, and says it did not start."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "train.log").write_text("epoch 1/16: the live run's own line\n")
    (folder / "train_seconds.txt").write_text("1875.5\n")

    def claimed_first(run):
        raise RunLockedError(f"{run} is in use by process 1 on host since then")

    monkeypatch.setattr(runs, "_train", claimed_first)
    with pytest.raises(RunElsewhere, match=r"training not started: another process claimed"):
        run_job(str(folder), None)
    assert (folder / "train_seconds.txt").read_text() == "1875.5\n"
    log = (folder / "train.log").read_text()
    assert "Traceback" not in log and log.rstrip().endswith("is in use by process 1 on host "
                                                            "since then")


def test_stopped_runs_train_first_then_every_configuration_seed_by_seed(tmp_path):
    """The queue: a run stopped part-way first (its steps are spent), then the first seed of
    every configuration, then the second, ... so that a long reproduction answers every row
    early. Every run is held by "another process" here, so each is refused at once and the
    log's start lines are the queue's order. Runs left to another process are not failures: the
    command ends without an error and names them."""
    lines: list[str] = []
    store = runs.RunStore(tmp_path, log=lines.append)
    specs = [RunSpec(row, row, {"likelihood": row}, seed)
             for row in ("gaussian", "optimal_sigma") for seed in (0, 1, 2)]
    stopped = specs[4]  # optimal_sigma, seed 1
    (store.folder(stopped) / "checkpoints").mkdir(parents=True)
    (store.folder(stopped) / "checkpoints" / "last.ckpt").write_bytes(b"")
    with contextlib.ExitStack() as held:
        for spec in specs:
            store.folder(spec).mkdir(parents=True, exist_ok=True)
            held.enter_context(RunLock(store.folder(spec)))
        store.execute(specs, settings=lambda spec: None, jobs=1, threads=1)
    assert sum(line.startswith("  left  ") for line in lines) == 6
    assert lines[-1].startswith("experiment: 6 run(s) left to the process(es) that train them")
    started = [line.split()[3] for line in lines if line.startswith("  start training of")]
    order = [specs[i].run_id for i in (4, 0, 3, 1, 2, 5)]
    assert started == order


def test_a_failing_run_still_fails_the_experiment_beside_runs_left_to_another_process(tmp_path):
    """Leaving a run to the process that trains it must not hide a real failure next to it."""
    lines: list[str] = []
    store = runs.RunStore(tmp_path, log=lines.append)
    held, broken = (RunSpec(row, row, {"likelihood": row, "data": "no-such-data"}, 0)
                    for row in ("gaussian", "optimal_sigma"))
    store.folder(held).mkdir(parents=True)
    with RunLock(store.folder(held)), pytest.raises(ExperimentError, match="1 run"):
        store.execute([held, broken], settings=lambda spec: None, jobs=1, threads=1)
    assert any(line.startswith(f"  left  {held.run_id}") for line in lines)
    assert any(line.startswith(f"  FAILED {broken.run_id}") for line in lines)


def test_a_run_another_process_finished_meanwhile_is_not_run_again(tmp_path):
    """Two experiments sharing a runs folder: a run the other one trained and evaluated while
    this one worked on its queue is skipped, its evaluation (perhaps with metrics evaluated
    again since) left as it is; one it trained only is evaluated, not trained again. (Every
    run is held by "another process" here, so each job is refused at once.)"""
    lines: list[str] = []
    first, evaluated_elsewhere, trained_elsewhere = (
        RunSpec(row, row, {"likelihood": row}, 0)
        for row in ("bernoulli", "gaussian", "optimal_sigma"))

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith(f"  start training of {first.run_id}"):  # meanwhile, elsewhere:
            for spec in (evaluated_elsewhere, trained_elsewhere):
                (store.folder(spec) / "final.json").write_text("{}")
            (store.folder(evaluated_elsewhere) / "eval.json").write_text('{"metrics": {}}')

    store = runs.RunStore(tmp_path, log=log)
    specs = [first, evaluated_elsewhere, trained_elsewhere]
    with contextlib.ExitStack() as held:
        for spec in specs:
            store.folder(spec).mkdir(parents=True)
            held.enter_context(RunLock(store.folder(spec)))
        store.execute(specs, jobs=1, threads=1,
                      settings=lambda spec: runs.EvalSettings(4, 4, 4, 1, "pixels"))
    assert f"  skip  {evaluated_elsewhere.run_id}: evaluated meanwhile by another process" \
        in lines
    assert (store.folder(evaluated_elsewhere) / "eval.json").read_text() == '{"metrics": {}}'
    starts = [line.split(" of ")[0].strip() + " " + line.split()[3]
              for line in lines if line.startswith("  start")]
    assert starts == [f"start training {first.run_id}",
                      f"start evaluation {trained_elsewhere.run_id}"]


def test_an_evaluation_holds_its_runs_lock(tmp_path, monkeypatch):
    """While a run is evaluated its lock is held, so a second experiment on the same runs
    folder leaves it to this one instead of evaluating it as well."""
    folder = tmp_path / "run"
    folder.mkdir()
    seen: list[str] = []

    def evaluate(self, checkpoint, out):
        with pytest.raises(RunLockedError):
            RunLock(folder).check_free()
        seen.append("locked")
        raise RuntimeError("stop here")

    monkeypatch.setattr(runs.Evaluation, "run", evaluate)
    with pytest.raises(ExperimentError, match="evaluation failed"):
        run_job(str(folder), runs.Evaluation(("elbo",), {}))
    assert seen == ["locked"]
    RunLock(folder).check_free()  # given back after it
