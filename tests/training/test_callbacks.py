"""The trainer's callbacks: the hooks a user's callback gets, stopping from a callback, and the
run folder's CSV logs (Fabric's CSV logger on steps.csv/epochs.csv) across a resume."""

from __future__ import annotations

import csv
import signal
from pathlib import Path
from typing import Any

import pytest

from sigmavae.training import TrainConfig, Trainer, load_checkpoint
from sigmavae.training.callbacks import EPOCH_COLUMNS, STEP_COLUMNS, default_callbacks
from sigmavae.training.logs import RunCSVLogger


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
        self.calls.append(("fit_start", state.step))

    def on_train_epoch_start(self, trainer, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_train_batch_end(self, trainer, state):
        self.calls.append(("batch_end", state.step))
        if state.step == self.stop_at:
            trainer.request_stop(signal.SIGTERM)

    def on_log_step(self, trainer, row):
        self.calls.append(("log_step", row["step"]))

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
    Trainer(_config(tmp_path, "run", log_every_n_steps=2), callbacks=[recorder]).fit()
    epoch = [("batch_end", 1), ("batch_end", 2), ("log_step", 2), ("batch_end", 3)]
    assert recorder.calls == [
        ("fit_start", 0), ("epoch_start", 0), *epoch, ("epoch_end", 1),
        ("epoch_start", 1), ("batch_end", 4), ("log_step", 4), ("batch_end", 5),
        ("batch_end", 6), ("log_step", 6), ("epoch_end", 2), ("fit_end", 6), ("teardown", None)]


@pytest.mark.parametrize(("stop_at", "position"), [(4, (1, 1)), (3, (0, 3))],
                         ids=["mid-epoch", "after-the-epochs-last-step"])
def test_a_callback_can_stop_the_run_which_then_resumes_exactly(tmp_path, stop_at, position):
    straight = Trainer(_config(tmp_path, "straight")).fit()
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
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6, abs=1e-6), key
    assert [r["epoch"] for r in _rows(tmp_path / "stopped" / "epochs.csv")] == ["1", "2"]


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_resumed_logs_read_as_an_uninterrupted_runs(tmp_path):
    """Rows logged after the checkpoint (as when a run is killed after logging them) are
    dropped on resume and logged again: the CSVs then equal those of the straight run."""
    Trainer(_config(tmp_path, "straight")).fit()
    Trainer(_config(tmp_path, "killed"), callbacks=[Recorder(stop_at=4)]).fit()  # ckpt: step 4
    killed = tmp_path / "killed"
    for name in ("steps.csv", "epochs.csv"):  # rows of a later part of the run, then a kill
        rows = _rows(tmp_path / "straight" / name)
        _write_rows(killed / name, [r if int(r["step"]) <= 4 else {**r, "train_loss": "stale"}
                                    for r in rows])
    Trainer(_config(tmp_path, "killed")).fit(resume="auto")
    for name in ("steps.csv", "epochs.csv"):
        a, b = _rows(tmp_path / "straight" / name), _rows(killed / name)
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
    logger.log_row({"step": 1, "a": 0.5, "b": None})
    assert _rows(path) == [{"step": "1", "b": "", "a": "0.5"}]  # on disk at once
    logger.log_row({"step": 2, "a": "n/a", "b": 3, "extra": "x"})
    assert [list(r.values()) for r in _rows(path)] == [["1", "", "0.5", ""],
                                                        ["2", "3", "n/a", "x"]]
    logger.finalize("success")
    # a fresh run replaces the file; a resumed one keeps the rows up to its step
    RunCSVLogger(path, ["step"], resume_step=1).experiment  # noqa: B018
    assert [r["step"] for r in _rows(path)] == ["1"] and list(_rows(path)[0]) == [
        "step", "b", "a", "extra"]
    RunCSVLogger(path, ["step"]).experiment  # noqa: B018
    assert not path.exists()


def test_default_callbacks_follow_the_config():
    names = [type(c).__name__ for c in default_callbacks(TrainConfig())]
    assert names == ["StopOnSignal", "ProgressBar", "RunFolder", "MetricLogs", "SampleGrid",
                     "ReconstructionGrid", "CurvePlot", "Checkpointing", "ConsoleLog"]
    assert "ProgressBar" not in [type(c).__name__
                                 for c in default_callbacks(TrainConfig(progress=False))]
