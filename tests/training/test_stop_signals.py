"""A stop signal stops a run within seconds wherever it is: in validation, in a sample grid,
and in ``sigmavae eval`` (a real SIGTERM each time: ``os.kill`` on this process, from a hook on
the model or from a timer, handled by the run's own handlers)."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import sigmavae.metrics.report as report_module
from sigmavae.cli import main
from sigmavae.metrics.report import evaluate_checkpoint
from sigmavae.run.stopping import StopRequested, StopSignals
from sigmavae.training import TrainConfig, Trainer, build_vae, load_checkpoint

#: seconds each validation batch of the "slow" model takes: 32 batches make validation last
#: about 10 s, far longer than a stop may take
SLOW_BATCH_S = 0.3


def _config(out: Path, **kw: Any) -> TrainConfig:
    values = {"data": "frey", "train_subset": 96, "val_subset": 64, "val_batch_size": 2,
              "batch_size": 32, "epochs": 1, "latent_dim": 4, "seed": 3, "log_every_n_steps": 1,
              "num_samples": 16, "accelerator": "cpu", "out": str(out), "progress": False,
              **kw}
    return TrainConfig(**values)


class KillAt:
    """A model factory whose module ``part`` (the whole model if ``None``), in eval mode
    (validation, grids), sends this process SIGTERM at its ``at``-th call and takes ``sleep``
    seconds per call otherwise."""

    def __init__(self, config: TrainConfig, part: str | None, at: int,
                 sleep: float = SLOW_BATCH_S) -> None:
        self.config, self.part, self.at, self.sleep = config, part, at, sleep
        self.calls = 0
        self.killed_at: float | None = None
        self.after_kill = 0  # calls after the signal: none, if the stop was immediate

    def __call__(self, shape: tuple[int, ...]) -> torch.nn.Module:
        model = build_vae(self.config, shape)
        module = getattr(model, self.part) if self.part else model
        module.register_forward_pre_hook(self.hook)
        return model

    def hook(self, module: torch.nn.Module, args: Any) -> None:
        if module.training:
            return
        self.calls += 1
        if self.killed_at is not None:
            self.after_kill += 1
        elif self.calls == self.at:
            # the run's handler, not the default (which would end pytest)
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            self.killed_at = time.perf_counter()
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(self.sleep)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The run without a stop (fast: no slow hook), what a stopped and resumed run must equal."""
    out = tmp_path_factory.mktemp("straight") / "run"
    return Trainer(_config(out)).fit(), out


def test_a_stop_in_validation_saves_at_once_and_the_resumed_run_validates(tmp_path, straight,
                                                                           capsys):
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)
    slow = KillAt(_config(out), part=None, at=3)  # the 3rd of 32 validation batches
    result = Trainer(_config(out), model=slow).fit()
    stopped_after = time.perf_counter() - slow.killed_at
    assert result == {"interrupted": True, "signal": signal.SIGTERM, "step": 3}
    assert slow.after_kill == 0  # not one more validation batch
    # validation had 29 batches of 0.3 s left (8.7 s); the stop, with its checkpoint, took
    # a fraction of that
    assert stopped_after < 0.5 * (32 - 3) * SLOW_BATCH_S, stopped_after
    ckpt = out / "checkpoints" / "last.ckpt"
    # the message and the exit status of a stop in training
    assert f"received signal {signal.SIGTERM}: saved {ckpt} at step 3" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is before  # the run's handler is gone again
    saved = load_checkpoint(ckpt)
    assert saved["loop"]["step"] == 3 and saved["loop"]["epoch"] == 0  # epoch not validated
    assert (saved["batches"]["epoch"], saved["batches"]["batch"]) == (0, 3)
    assert _epoch_rows(out) == []  # the epoch's validation is not recorded
    assert not (out / "final.json").exists()
    # resumed: the epoch is validated and recorded, as in the run that was never stopped
    resumed = Trainer(_config(out)).fit(resume="auto")
    final, _ = straight
    for key in ("train_loss", "val_neg_elbo", "val_nll", "val_kl", "sigma", "step"):
        assert resumed[key] == pytest.approx(final[key], rel=1e-6, abs=1e-6), key
    assert [r["epoch"] for r in _epoch_rows(out)] == ["1"]


def test_a_stop_in_the_sample_grid_keeps_the_epoch_and_leaves_no_png(tmp_path, straight):
    out = tmp_path / "run"
    # the decoder's eval calls: 32 validation batches, then the sample grid's one draw
    slow = KillAt(_config(out), part="decoder", at=33, sleep=0.0)
    result = Trainer(_config(out), model=slow).fit()
    assert result["interrupted"] and result["signal"] == signal.SIGTERM
    assert slow.killed_at is not None and slow.after_kill == 0
    assert not (out / "samples").exists() and not (out / "reconstructions").exists()
    saved = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert saved["loop"]["epoch"] == 1 and saved["loop"]["step"] == 3  # the epoch is done
    assert [(r["epoch"], r["step"]) for r in _epoch_rows(out)] == [("1", "3")]  # and recorded


def _epoch_rows(out: Path) -> list[dict[str, str]]:
    path = out / "epochs.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _kill_in(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


class KillDuring:
    """An ``evaluate_checkpoint`` log that sends SIGTERM ``delay`` seconds after the line of
    ``metric`` (so the signal comes inside that metric's batches), and times the stop."""

    def __init__(self, metric: str, delay: float) -> None:
        self.metric, self.delay = metric, delay
        self.lines: list[str] = []
        self.started: float | None = None

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if line == f"eval: {self.metric} ...":
            self.started = time.perf_counter()
            _kill_in(self.delay)


def test_eval_stops_inside_a_metric_and_writes_nothing(tmp_path, straight):
    _, run = straight
    ckpt = run / "checkpoints" / "last.ckpt"
    before = signal.getsignal(signal.SIGTERM)
    log = KillDuring("iwae", delay=1.0)
    out = tmp_path / "eval.json"
    # IWAE with 5000 samples of 64 test images: about a minute on a 2-core CPU
    with pytest.raises(StopRequested) as info:
        evaluate_checkpoint(ckpt, "elbo,calibration,iwae", limit=64, iwae_samples=5000,
                            device="cpu", out=out, log=log)
    took = time.perf_counter() - log.started
    assert info.value.signum == signal.SIGTERM and info.value.phase == "evaluation"
    assert str(info.value) == "stopped by SIGTERM (signal 15) during evaluation"
    assert took < 5.0, took  # 1 s to the signal, then at once
    assert log.lines == ["eval: elbo ...", "eval: calibration ...", "eval: iwae ..."]
    assert list(tmp_path.iterdir()) == []  # no report; the calibration plot removed too
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigmavae_eval_stopped_exits_with_one_line(tmp_path, straight, monkeypatch, capsys):
    _, run = straight
    log = KillDuring("iwae", delay=1.0)
    monkeypatch.setattr(report_module, "stderr_log", log)  # what the command logs through
    out = tmp_path / "eval.json"
    code = main(["eval", str(run / "checkpoints" / "last.ckpt"), "--metrics", "iwae",
                 "--limit", "64", "--iwae-samples", "5000", "--device", "cpu",
                 "--out", str(out)])
    assert code == 128 + signal.SIGTERM
    captured = capsys.readouterr()
    assert captured.err == ("sigmavae eval: stopped by SIGTERM (signal 15) during evaluation; "
                            "nothing written\n")
    assert captured.out == "" and not out.exists()


def test_stop_signals_restore_handlers_and_stay_out_of_other_threads():
    before = signal.getsignal(signal.SIGINT)
    stops = StopSignals()
    with stops:
        assert signal.getsignal(signal.SIGINT) is not before
        os.kill(os.getpid(), signal.SIGINT)  # outside interruptible work: only recorded
        time.sleep(0.01)
        assert stops.requested == signal.SIGINT
        with pytest.raises(StopRequested, match="SIGINT"), stops.interruptible("work"):
            pass  # a stop asked before: raised on entry
    assert signal.getsignal(signal.SIGINT) is before
    installed: list[bool] = []
    thread = threading.Thread(target=lambda: installed.append(StopSignals().install()))
    thread.start()
    thread.join()
    assert installed == [False] and signal.getsignal(signal.SIGINT) is before


def test_a_finished_report_is_written_whole(tmp_path, straight):
    """The happy path writes the report (the stop machinery leaves a complete run alone)."""
    _, run = straight
    result = evaluate_checkpoint(run / "checkpoints" / "last.ckpt", "elbo", limit=32,
                                 device="cpu", out=tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["elbo"]["available"]
    assert result.files == [tmp_path / "r.json", tmp_path / "r.md"]
