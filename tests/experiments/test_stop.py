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

pytestmark = pytest.mark.slow


def _started(runs: Path) -> list[Path]:
    return [p for p in runs.glob("*/steps.csv") if len(p.read_text().splitlines()) > 2]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_checkpoints_every_running_training_and_leaves_no_worker(tmp_path):
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "sigmavae", "experiment", "variance-convergence",
               "--preset", "quick", "--data", "frey", "--seeds", "1", "--jobs", "2",
               "--runs-dir", str(runs), "--out", str(tmp_path / "out")]
    env = {**os.environ, "SIGMAVAE_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(_started(runs)) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.5)
        assert len(_started(runs)) == 2, "two trainings never started"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal 15" in err and "resume" in err
    deadline = time.monotonic() + 60  # the workers go with it (torch's teardown takes seconds)
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _group_alive(process.pid), "a worker outlived the stopped command"
    started = [p.parent for p in _started(runs)]
    for run in started:  # each running training saved where it was
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert "received signal 15" in (run / "train.log").read_text()
    assert not any((p / "final.json").is_file() for p in started)
