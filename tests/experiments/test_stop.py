"""A stop signal to `sigmavae experiment` reaches its trainings: each checkpoints, the command
exits 128 + signal, and no worker process is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _started(runs: Path) -> list[Path]:
    return [p for p in runs.glob("*/steps.csv") if len(p.read_text().splitlines()) > 2]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_sigterm_checkpoints_every_running_training_and_leaves_no_worker(tmp_path):
    runs = tmp_path / "runs"
    busy = 2
    command = [sys.executable, "-m", "sigmavae", "experiment", "variance-convergence",
               "--preset", "quick", "--data", "frey", "--seeds", "1", "--jobs", "2",
               "--runs-dir", str(runs), "--out", str(tmp_path / "out")]
    env = {**os.environ, "SIGMAVAE_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(_started(runs)) < busy and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.5)
        assert len(_started(runs)) == busy, f"{busy} training(s) never started"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal 15" in err and "resume" in err
    # every worker lived through the signal: no pool broken by one that died of it (which,
    # with a training still saving, could leave the command waiting on that worker)
    assert "terminated abruptly" not in out + err
    assert out.count("training failed (143): received signal 15") == busy, out
    deadline = time.monotonic() + 60  # the workers go with it (torch's teardown takes seconds)
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _group_alive(process.pid), "a worker outlived the stopped command"
    started = [p.parent for p in _started(runs)]
    for run in started:  # each running training saved where it was
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert "received signal 15" in (run / "train.log").read_text()
    assert not any((p / "final.json").is_file() for p in started)


def _pid() -> int:
    return os.getpid()


def test_an_idle_worker_outlives_a_stop_signal_and_starts_no_new_job(tmp_path):
    """A worker between jobs that dies of SIGTERM breaks the pool, and a training still saving
    in another worker can then leave the command waiting on it; the worker records the signal
    instead, and a job handed to it afterwards is not begun."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from sigmavae.experiments.presets import ExperimentError
    from sigmavae.experiments.runs import _init_worker, run_job

    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                             initializer=_init_worker, initargs=(1,)) as pool:
        worker = pool.submit(_pid).result(timeout=120)
        os.kill(worker, signal.SIGTERM)
        time.sleep(1.0)
        assert pool.submit(_pid).result(timeout=60) == worker  # alive, the pool whole
        (tmp_path / "run").mkdir()
        with pytest.raises(ExperimentError, match="training not started: stopped by signal 15"):
            pool.submit(run_job, str(tmp_path / "run"), None).result(timeout=60)
