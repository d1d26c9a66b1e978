"""RunLock: one process per run folder, a lock the kernel drops when its holder dies."""

from __future__ import annotations

import json
import os
import socket

import pytest

from sigmavae.run import RunLock, RunLockedError
from sigmavae.run.lock import LOCK_NAME


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    first = RunLock(tmp_path / "run").acquire()  # creates the folder
    note = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
    assert note["pid"] == os.getpid() and note["host"] == socket.gethostname()
    # flock locks belong to open files: a second open of the file conflicts, even in this process
    with pytest.raises(RunLockedError) as info:
        RunLock(tmp_path / "run").acquire()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'run'} is in use by process {os.getpid()} on "
                              f"{socket.gethostname()} since {note['since']}")
    assert "\n" not in message
    with pytest.raises(RunLockedError):
        RunLock(tmp_path / "run").check_free()
    first.release()
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released: the file goes with it
    with RunLock(tmp_path / "run") as again:  # free again
        assert again.held
    assert not again.held


def test_check_free_takes_and_creates_nothing(tmp_path):
    RunLock(tmp_path / "none").check_free()
    assert not (tmp_path / "none").exists()


def test_a_stale_lock_file_is_taken_over(tmp_path):
    """A lock file left by a process that died (nothing holds its lock) is simply locked again,
    its note replaced by this process's."""
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "gone"}))
    lock = RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_file_replaced_while_locking_is_opened_again(tmp_path, monkeypatch):
    """A holder removes the file as it releases: a process that opened the old file just
    before must not hold a lock on a file nobody else will open."""
    import sigmavae.run.lock as lock_module

    real = lock_module._same_file
    calls = []

    def replaced_once(fd, path):
        calls.append(path)
        return real(fd, path) if len(calls) > 1 else False  # the first file was replaced

    monkeypatch.setattr(lock_module, "_same_file", replaced_once)
    lock = RunLock(tmp_path).acquire()
    assert lock.held and len(calls) == 2
    lock.release()
