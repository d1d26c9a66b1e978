"""The trainer's callbacks: the hooks a user's callback gets, what it reads of the run, stopping
from a callback, and the run folder's CSV logs (a Fabric logger on steps.csv/epochs.csv) across a
resume."""

from __future__ import annotations

import ast
import csv
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning_fabric.loggers import Logger

import sigmavae
from sigmavae.training import TrainConfig, Trainer, load_checkpoint
from sigmavae.training.callbacks import RunInfo, default_callbacks
from sigmavae.training.logs import RunCSVLogger, last_row
from sigmavae.training.rows import EPOCH_COLUMNS, STEP_COLUMNS


def _config(tmp_path: Path, name: str, **kw: Any) -> TrainConfig:
    values = {"data": "frey", "train_subset": 192, "val_subset": 32, "batch_size": 64,
              "epochs": 2, "latent_dim": 4, "seed": 4, "log_every_n_steps": 1,
              "out": str(tmp_path / name), "progress": False, **kw}
    return TrainConfig(**values)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class Recorder:
    """Records the hooks it gets (the arguments each hook documents, by keyword)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.stop_at = stop_at

    def on_fit_start(self, trainer, state):
        self.run = trainer.run
        self.calls.append(("fit_start", state.step))

    def on_train_epoch_start(self, trainer, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_train_batch_end(self, trainer, state):
        self.calls.append(("batch_end", state.step))
        if state.step == self.stop_at:
            trainer.request_stop(signal.SIGTERM)

    def on_log_step(self, trainer, row):
        self.calls.append(("log_step", row["step"]))

    def on_validation_start(self, trainer, state):
        self.calls.append(("validation_start", state.step))

    def on_train_epoch_end(self, trainer, state, row, report):
        assert row["epoch"] == state.epoch and report.num_images == 32
        self.calls.append(("epoch_end", state.epoch))

    def on_stop(self, trainer, state, signum):
        self.calls.append(("stop", signum))

    def on_fit_end(self, trainer, final):
        self.calls.append(("fit_end", final["step"]))

    def on_teardown(self, trainer):
        self.calls.append(("teardown", None))


def test_a_callback_gets_every_hook_in_order(tmp_path):
    recorder = Recorder()
    config = _config(tmp_path, "run", log_every_n_steps=2)
    Trainer(config, callbacks=[recorder]).fit()
    epoch = [("batch_end", 1), ("batch_end", 2), ("log_step", 2), ("batch_end", 3)]
    assert recorder.calls == [
        ("fit_start", 0), ("epoch_start", 0), *epoch, ("validation_start", 3), ("epoch_end", 1),
        ("epoch_start", 1), ("batch_end", 4), ("log_step", 4), ("batch_end", 5),
        ("batch_end", 6), ("log_step", 6), ("validation_start", 6), ("epoch_end", 2),
        ("fit_end", 6), ("teardown", None)]
    # what a callback reads of the run: one read-only object, set up before on_fit_start
    run = recorder.run
    assert isinstance(run, RunInfo) and run.config == config and run.resumed_from is None
    assert run.out == tmp_path / "run" and run.checkpoint_path == run.out / "checkpoints" / (
        "last.ckpt")
    assert (run.precision, run.channels_last, run.head_label) == ("32-true", False,
                                                                  "optimal_sigma")
    assert len(run.batches) == 3 and run.val_images.shape == (32, 1, 28, 20)
    assert run.bounds.train_note.startswith("optimistic") and run.bounds.val_note is None
    with pytest.raises(AttributeError):
        run.out = tmp_path  # type: ignore[misc]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """A run without a break: what the stopped and resumed runs below must equal."""
    folder = tmp_path_factory.mktemp("straight")
    return Trainer(_config(folder, "straight")).fit(), folder / "straight"


@pytest.mark.parametrize(("stop_at", "position"), [(4, (1, 1)), (3, (0, 3))],
                         ids=["mid-epoch", "after-the-epochs-last-step"])
def test_a_callback_can_stop_the_run_which_then_resumes_exactly(tmp_path, straight, stop_at,
                                                              position):
    straight_final, _ = straight
    recorder = Recorder(stop_at=stop_at)
    stopped = Trainer(_config(tmp_path, "stopped"), callbacks=[recorder]).fit()
    assert stopped == {"interrupted": True, "signal": signal.SIGTERM, "step": stop_at}
    assert recorder.calls[-3:] == [("log_step", stop_at), ("stop", signal.SIGTERM),
                                   ("teardown", None)]
    saved = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.ckpt")
    assert saved["loop"]["step"] == stop_at
    assert (saved["batches"]["epoch"], saved["batches"]["batch"]) == position
    assert not (tmp_path / "stopped" / "final.json").exists()
    resumed = Trainer(_config(tmp_path, "stopped")).fit(resume="auto")
    for key in ("train_loss", "val_nll", "val_kl", "sigma", "step"):
        assert resumed[key] == pytest.approx(straight_final[key], rel=1e-6, abs=1e-6), key
    assert [r["epoch"] for r in _rows(tmp_path / "stopped" / "epochs.csv")] == ["1", "2"]


class StopAfterEpoch:
    """Asks to stop at the end of the first epoch (an early-stopping callback would)."""

    def on_train_epoch_end(self, trainer, state, row, report):
        trainer.request_stop(0)


def test_a_stop_asked_at_an_epochs_end_comes_before_the_next_epoch(tmp_path):
    stopped = Trainer(_config(tmp_path, "early"), callbacks=[StopAfterEpoch()]).fit()
    assert stopped == {"interrupted": True, "signal": 0, "step": 3}  # no step of epoch 2
    saved = load_checkpoint(tmp_path / "early" / "checkpoints" / "last.ckpt")
    assert (saved["loop"]["epoch"], saved["loop"]["step"]) == (1, 3)


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_resumed_logs_read_as_an_uninterrupted_runs(tmp_path, straight):
    """Rows logged after the checkpoint (as when a run is killed after logging them) are
    dropped on resume and logged again: the CSVs then equal those of the straight run."""
    _, straight_out = straight
    Trainer(_config(tmp_path, "killed"), callbacks=[Recorder(stop_at=4)]).fit()  # ckpt: step 4
    killed = tmp_path / "killed"
    for name in ("steps.csv", "epochs.csv"):  # rows of a later part of the run, then a kill
        rows = _rows(straight_out / name)
        _write_rows(killed / name, [r if int(r["step"]) <= 4 else {**r, "train_loss": "stale"}
                                    for r in rows])
    Trainer(_config(tmp_path, "killed")).fit(resume="auto")
    for name in ("steps.csv", "epochs.csv"):
        a, b = _rows(straight_out / name), _rows(killed / name)
        assert [r["step"] for r in b] == [r["step"] for r in a], name
        for x, y in zip(a, b, strict=True):
            timings = {"seconds", "val_seconds"}
            assert {k: v for k, v in x.items() if k not in timings} == {
                k: v for k, v in y.items() if k not in timings}, name
    assert list(_rows(killed / "steps.csv")[0]) == STEP_COLUMNS
    assert list(_rows(killed / "epochs.csv")[0]) == EPOCH_COLUMNS


def test_csv_logger_keeps_columns_in_order_and_flushes_each_row(tmp_path):
    path = tmp_path / "run" / "steps.csv"
    logger = RunCSVLogger(path, ["step", "b", "a"])
    assert isinstance(logger, Logger) and logger.log_dir == str(path.parent)  # Fabric's API
    logger.log_row({"step": 1, "a": 0.5, "b": None})
    assert _rows(path) == [{"step": "1", "b": "", "a": "0.5"}]  # on disk at once
    logger.log_metrics({"step": 2, "a": "n/a", "b": torch.tensor(3), "extra": "x"}, step=2)
    assert [list(r.values()) for r in _rows(path)] == [["1", "", "0.5", ""],
                                                        ["2", "3", "n/a", "x"]]
    logger.finalize("success")
    assert last_row(path) == {"step": 2, "b": 3, "a": "n/a", "extra": "x"}
    # a fresh run replaces the file; a resumed one keeps the rows up to its step
    RunCSVLogger(path, ["step"], resume_step=1).experiment  # noqa: B018
    assert [r["step"] for r in _rows(path)] == ["1"] and list(_rows(path)[0]) == [
        "step", "b", "a", "extra"]
    assert last_row(path) == {"step": 1, "b": None, "a": 0.5, "extra": None}
    RunCSVLogger(path, ["step"]).experiment  # noqa: B018
    assert not path.exists() and last_row(path) is None


def test_a_resumed_csv_drops_rows_cut_short_and_gets_the_columns_it_lacks(tmp_path):
    path = tmp_path / "epochs.csv"
    path.write_bytes(b"step,a\r\n1,0.5\r\n2,0.25\r\n3\r\n")  # the last row cut by a kill
    logger = RunCSVLogger(path, ["step", "a", "b"], resume_step=3)
    logger.log_row({"step": 3, "a": 1.0, "b": 2.0})
    assert path.read_bytes() == b"step,a,b\r\n1,0.5,\r\n2,0.25,\r\n3,1.0,2.0\r\n"


def test_no_private_fabric_module_is_imported():
    """Only Fabric's public API: no ``lightning_fabric._x`` or ``lightning_fabric.x._y``."""
    src = Path(sigmavae.__file__).parent
    found = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                parts = name.split(".")
                private = [p for p in parts if p.startswith("_")]
                imported = ([a.name for a in node.names if a.name.startswith("_")]
                            if isinstance(node, ast.ImportFrom) else [])
                if parts[0] in ("lightning_fabric", "lightning") and (private or imported):
                    found.append(f"{path.relative_to(src)}: {name}")
    assert found == []


def test_default_callbacks_follow_the_config():
    names = [type(c).__name__ for c in default_callbacks(TrainConfig())]
    assert names == ["StopOnSignal", "ProgressBar", "RunFolder", "MetricLogs", "SampleGrid",
                     "ReconstructionGrid", "CurvePlot", "Checkpointing", "ConsoleLog"]
    assert "ProgressBar" not in [type(c).__name__
                                 for c in default_callbacks(TrainConfig(progress=False))]
