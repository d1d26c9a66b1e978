"""The run folder: what counts as a run, when a new run may start there, and clearing one."""

from __future__ import annotations

import pytest

from sigmavae.run import RunExistsError, clear_run, next_version, run_outputs
from sigmavae.run.folder import RUN_OUTPUTS, start_check


def _run(folder, *, checkpoint=True, results=True):
    """A run folder as the trainer leaves it (file contents do not matter here)."""
    (folder / "tensorboard").mkdir(parents=True)
    (folder / "tensorboard" / "events.out.tfevents.1").write_bytes(b"x")
    (folder / "config.json").write_text("{}")
    (folder / "steps.csv").write_text("step\n1\n")
    if checkpoint:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    if results:
        (folder / "epochs.csv").write_text("epoch,step\n1,1\n")
        (folder / "final.json").write_text("{}")
    return folder


def test_what_counts_as_a_run(tmp_path):
    assert run_outputs(tmp_path / "missing") == []
    (tmp_path / "checkpoints").mkdir()  # an empty folder is no run
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".lock").write_text("")
    assert run_outputs(tmp_path) == []
    _run(tmp_path / "r")
    assert run_outputs(tmp_path / "r") == ["checkpoints", "config.json", "final.json",
                                           "epochs.csv", "steps.csv", "tensorboard"]


@pytest.mark.parametrize("resume", [None, "auto", "elsewhere"])
def test_a_run_is_never_replaced_without_overwrite(tmp_path, resume):
    folder = _run(tmp_path / "run", checkpoint=resume != "auto")
    other = tmp_path / "other.ckpt"
    with pytest.raises(RunExistsError) as info:
        start_check(folder, other if resume == "elsewhere" else resume, overwrite=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{folder} ")
    assert "--overwrite" in message
    if resume is None:  # the three ways on
        assert "--resume auto" in message and f"--new-version (into {tmp_path / 'run-2'})" in (
            message)
    assert start_check(folder, other if resume == "elsewhere" else resume, overwrite=True) == (
        run_outputs(folder))


def test_continuing_the_run_itself_removes_nothing(tmp_path):
    folder = _run(tmp_path / "run")
    assert start_check(folder, "auto", overwrite=False) == []
    assert start_check(folder, folder / "checkpoints" / "last.ckpt", overwrite=False) == []
    assert start_check(folder, "auto", overwrite=True) == []  # resuming wins over overwrite
    assert start_check(tmp_path / "new", None, overwrite=False) == []


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    """--resume auto where the run never saved a checkpoint nor finished an epoch: nothing to
    keep, its partial logs (overlapping TensorBoard steps) are removed."""
    folder = _run(tmp_path / "run", checkpoint=False, results=False)
    assert start_check(folder, "auto", overwrite=False) == ["config.json", "steps.csv",
                                                             "tensorboard"]


def test_clear_run_removes_only_the_runs_outputs(tmp_path):
    folder = _run(tmp_path / "run")
    (folder / "eval.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")
    found = run_outputs(folder)
    assert clear_run(folder) == found == ["checkpoints", "config.json", "final.json",
                                          "epochs.csv", "steps.csv", "tensorboard"]
    assert sorted(p.name for p in folder.iterdir()) == ["eval.json", "notes.txt"]
    assert set(found) <= set(RUN_OUTPUTS)
    with pytest.raises(ValueError, match="not a run output"):
        clear_run(folder, ["notes.txt"])


def test_next_version_is_the_first_free_sibling(tmp_path):
    assert next_version(tmp_path / "run") == tmp_path / "run-2"
    (tmp_path / "run-2").mkdir()
    (tmp_path / "run-3").write_text("")
    assert next_version(tmp_path / "run") == tmp_path / "run-4"
