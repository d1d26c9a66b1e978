"""Checkpoint writes that fail: a full disk (simulated, and a real small tmpfs), permissions, a
read-only file system, a failing fsync or rename. Each raises CheckpointError with one line, keeps
the previous checkpoint loadable and leaves no temporary file behind."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sigmavae.run import checkpoint as checkpoint_module
from sigmavae.training import CheckpointError, load_checkpoint, save_checkpoint

SMALL = {"model": {"w": torch.arange(8.0)}, "step": 1}


def _big(step: int = 2) -> dict:
    return {"model": {"w": torch.randn(100_000)}, "step": step}  # 400 KB of float32


def _assert_previous_intact(folder: Path, path: Path) -> None:
    assert load_checkpoint(path)["step"] == 1
    assert sorted(os.listdir(folder)) == [path.name]  # no *.tmp left


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_simulated_full_disk_midway(tmp_path, monkeypatch):
    path = save_checkpoint(SMALL, tmp_path / "last.ckpt")
    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(_big(), path)
    monkeypatch.setattr(torch, "save", real_save)
    message = _one_line(err)
    assert message.startswith(f"no space left on device while writing the checkpoint {path} ")
    assert re.search(r"needed about 40\d KB", message)
    assert f"the last good checkpoint {path} is intact" in message
    _assert_previous_intact(tmp_path, path)


def test_full_disk_as_torch_reports_it(tmp_path, monkeypatch):
    """torch's zip writer turns the OSError of a short write into a RuntimeError."""
    path = save_checkpoint(SMALL, tmp_path / "last.ckpt")

    def fail_like_torch(obj, f, *args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 "
                               "vs 662") from None

    monkeypatch.setattr(torch, "save", fail_like_torch)
    # no cause, only the context: as torch's error, raised while the OSError is handled
    with pytest.raises(CheckpointError, match=r"^no space left on device"):
        save_checkpoint(_big(), path)
    monkeypatch.undo()
    _assert_previous_intact(tmp_path, path)


def test_first_checkpoint_on_a_full_disk_says_nothing_was_replaced(tmp_path, monkeypatch):
    def fail(obj, f, *args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(_big(), tmp_path / "last.ckpt")
    assert "disk quota exceeded" in _one_line(err)
    assert "no earlier checkpoint was there to replace" in str(err.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("where", "code", "expected"), [
    ("fsync", errno.EIO, "could not write the checkpoint .*: input/output error"),
    ("replace", errno.EXDEV, "could not write the checkpoint .*: invalid cross-device link"),
    ("replace", errno.EACCES, "permission denied writing the checkpoint"),
    ("mkstemp", errno.EACCES, "permission denied writing the checkpoint"),
    ("mkstemp", errno.EROFS, "read-only file system: cannot write the checkpoint"),
])
def test_failing_fsync_rename_or_create_cleans_up(tmp_path, monkeypatch, where, code, expected):
    path = save_checkpoint(SMALL, tmp_path / "last.ckpt")

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    target = checkpoint_module.tempfile if where == "mkstemp" else os
    monkeypatch.setattr(target, where, fail)
    with pytest.raises(CheckpointError, match=expected) as err:
        save_checkpoint(_big(), path)
    monkeypatch.undo()
    message = _one_line(err)
    assert str(path) in message and f"the last good checkpoint {path} is intact" in message
    _assert_previous_intact(tmp_path, path)


def test_torch_write_error_without_an_oserror_on_a_full_disk(tmp_path, monkeypatch):
    """torch's C++ writer may fail with only a RuntimeError: a disk without room for the state
    is then reported as full."""
    path = save_checkpoint(SMALL, tmp_path / "last.ckpt")

    def fail(obj, f, *args, **kwargs):
        f.write(b"x" * 100)
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", fail)
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage",
                        lambda folder: SimpleNamespace(total=10**6, used=10**6 - 5000, free=5000))
    with pytest.raises(CheckpointError, match=r"^no space left on device .*, 5 KB free\)"):
        save_checkpoint(_big(), path)
    monkeypatch.undo()
    _assert_previous_intact(tmp_path, path)


@pytest.mark.parametrize("code", [errno.EIO, errno.EINVAL])
def test_folder_sync_after_the_rename(tmp_path, monkeypatch, code):
    """The new checkpoint is in place; a folder that cannot be synced is an error unless the
    file system does not support syncing folders (EINVAL)."""
    path = save_checkpoint(SMALL, tmp_path / "last.ckpt")
    real_fsync = os.fsync

    def fail_on_folders(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        real_fsync(fd)  # the file itself syncs

    monkeypatch.setattr(os, "fsync", fail_on_folders)
    if code == errno.EINVAL:
        save_checkpoint({**SMALL, "step": 2}, path)
    else:
        with pytest.raises(CheckpointError, match="could not sync its folder to disk"):
            save_checkpoint({**SMALL, "step": 2}, path)
    assert load_checkpoint(path)["step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]


def test_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the run folder should be")
    with pytest.raises(CheckpointError, match="could not write the checkpoint") as err:
        save_checkpoint(SMALL, blocker / "checkpoints" / "last.ckpt")
    assert str(blocker / "checkpoints" / "last.ckpt") in _one_line(err)


# -- a real full disk: a 64 KB tmpfs (needs root; CI runs as root) ---------------------------------
@pytest.fixture
def small_disk(small_disk_factory) -> Path:
    """A 64 KB tmpfs mounted at a fresh folder (skips where mounting is not permitted)."""
    return small_disk_factory("64k")


def test_real_full_disk(small_disk):
    path = save_checkpoint(SMALL, small_disk / "last.ckpt")  # about 1.5 KB: fits
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(_big(), path)  # 400 KB: does not
    message = _one_line(err)
    assert message.startswith(f"no space left on device while writing the checkpoint {path} ")
    assert re.search(r"needed about 40\d KB, \d+ KB free", message)
    assert f"the last good checkpoint {path} is intact" in message
    _assert_previous_intact(small_disk, path)
    # the space of the failed write is given back: a small checkpoint still fits
    save_checkpoint({**SMALL, "step": 3}, path)
    assert load_checkpoint(path)["step"] == 3


def test_real_read_only_file_system(small_disk):
    path = save_checkpoint(SMALL, small_disk / "last.ckpt")
    done = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {done.stderr.strip()}")
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(_big(), path)
    assert _one_line(err).startswith(f"read-only file system: cannot write the checkpoint {path}")
    _assert_previous_intact(small_disk, path)
