"""Atomic checkpoint writes and safe loading."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from sigmavae.training import CheckpointError, load_checkpoint, save_checkpoint


def test_roundtrip(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "step": 7}
    path = save_checkpoint(state, tmp_path / "c" / "last.ckpt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint({"model": {}, "step": 1}, path)

    def exploding_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(CheckpointError, match="no space left on device"):
        save_checkpoint({"model": {}, "step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > should_not_exist",))


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    with path.open("wb") as f:
        pickle.dump({"model": _Payload()}, f)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not (tmp_path / "should_not_exist").exists()


def test_truncated_and_missing_checkpoints(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint({"model": {"w": torch.randn(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
