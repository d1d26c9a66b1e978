"""End-to-end training on real data (Frey Face, the CIFAR-10 JPEG copy), resume, signals."""

from __future__ import annotations

import csv
import os
import signal
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sigmavae.data import load_dataset
from sigmavae.training import (
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    build_vae,
    load_trained,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _epochs(out: Path) -> list[dict[str, str]]:
    with (out / "epochs.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_frey_training_improves_validation_elbo(tmp_path):
    cfg = TrainConfig(data="frey", epochs=10, batch_size=64, out=str(tmp_path), progress=False)
    final = Trainer(cfg).fit()
    rows = _epochs(tmp_path)
    assert len(rows) == 10 and int(rows[-1]["step"]) == 250  # 1565 / 64 -> 25 steps per epoch
    first, last = float(rows[0]["val_neg_elbo"]), float(rows[-1]["val_neg_elbo"])
    assert last < first - 150.0, (first, last)  # nats per image
    assert final["effective_beta"] < 0.05  # the optimal sigma shrank from its start near 1
    for sub in ("samples/epoch_0010.png", "reconstructions/epoch_0010.png", "curves.png",
                "checkpoints/last.ckpt", "final.json", "steps.csv"):
        assert (tmp_path / sub).is_file(), sub
    assert any((tmp_path / "tensorboard").iterdir())
    model, config = load_trained(tmp_path / "checkpoints" / "last.ckpt")
    assert config == cfg and model.data_shape == (1, 28, 20)


@pytest.mark.slow
def test_folder_training_on_cifar10_jpeg_slice(tmp_path):
    tar_path = SHARED / "cifar10-jpeg" / "test.tar"
    root = tmp_path / "images"
    with tarfile.open(tar_path) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")][:1200]
        tar.extractall(root, members=members, filter="data")
    cfg = TrainConfig(data="folder", data_root=str(root), epochs=16, batch_size=64,
                      out=str(tmp_path / "run"), progress=False,
                      data_options={"cache_dir": str(tmp_path / "cache")})
    Trainer(cfg).fit()
    rows = _epochs(tmp_path / "run")
    first, last = float(rows[0]["val_neg_elbo"]), float(rows[-1]["val_neg_elbo"])
    assert last < first - 300.0, (first, last)  # nats per 32x32x3 image


def _small(tmp_path: Path, name: str, **kw) -> TrainConfig:
    values = {"data": "frey", "train_subset": 192, "val_subset": 32, "batch_size": 64,
              "out": str(tmp_path / name), "progress": False, "seed": 3, **kw}
    return TrainConfig(**values)  # 3 steps an epoch


def _params(out: Path) -> dict[str, torch.Tensor]:
    model, _ = load_trained(out / "checkpoints" / "last.ckpt")
    return model.state_dict()


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A two-epoch run without a break: what every resumed run below must equal."""
    folder = tmp_path_factory.mktemp("straight")
    return Trainer(_small(folder, "run", epochs=2)).fit(), folder / "run"


def test_resume_equals_uninterrupted(tmp_path, straight):
    final, out = straight
    Trainer(_small(tmp_path, "split", epochs=1)).fit()
    resumed = Trainer(_small(tmp_path, "split", epochs=2)).fit(resume="auto")
    for key in ("train_loss", "val_nll", "val_kl", "sigma", "step"):
        assert resumed[key] == pytest.approx(final[key], rel=1e-6, abs=1e-6), key
    a, b = _params(out), _params(tmp_path / "split")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    assert len(_epochs(tmp_path / "split")) == 2


def test_finished_run_killed_before_final_json_gets_it_on_resume(tmp_path):
    import json

    final = Trainer(_small(tmp_path, "done", epochs=1, train_subset=64)).fit()
    path = tmp_path / "done" / "final.json"
    written = json.loads(path.read_text())
    path.unlink()  # killed after the last checkpoint, before the end of the run
    again = Trainer(_small(tmp_path, "done", epochs=1, train_subset=64)).fit(resume="auto")
    assert json.loads(path.read_text()) == written
    assert again["val_report"] == final["val_report"] and again["step"] == final["step"]
    assert len(_epochs(tmp_path / "done")) == 1


class SignalAt:
    """Sends this process SIGTERM after step ``step``, as ``kill`` would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, state):
        if state.step == self.step:
            # the run's StopOnSignal handler, not the default (which would end pytest)
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGTERM)


def test_signal_saves_mid_epoch_and_resume_continues_exactly(tmp_path, straight, capsys):
    final, _ = straight
    before = signal.getsignal(signal.SIGTERM)
    stopped = Trainer(_small(tmp_path, "stopped", epochs=2), callbacks=[SignalAt(4)]).fit()
    assert stopped == {"interrupted": True, "signal": signal.SIGTERM, "step": 4}
    ckpt = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert f"received signal {signal.SIGTERM}: saved {ckpt} at step 4" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is before  # the run's handler is gone again
    resumed = Trainer(_small(tmp_path, "stopped", epochs=2)).fit(resume="auto")
    for key in ("train_loss", "val_nll", "sigma", "step"):
        assert resumed[key] == pytest.approx(final[key], rel=1e-6, abs=1e-6), key


def test_nonfinite_guard_skips_then_stops(tmp_path):
    cfg = _small(tmp_path, "nan", epochs=1, max_nonfinite_steps=3)

    def nan_decoder(shape):  # the config's model, its decoder's output made NaN: a NaN loss
        model = build_vae(cfg, shape)
        model.decoder.register_forward_hook(lambda module, args, out: out * float("nan"))
        return model

    with pytest.raises(NonFiniteLossError, match=r"^3 consecutive steps had a non-finite loss "
                                                 r"or gradient \(step \d+\); likely cause: .*; no "
                                                 "checkpoint yet$"):
        Trainer(cfg, model=nan_decoder).fit()


def test_batch_larger_than_data_set_is_a_clear_error(tmp_path):
    train = load_dataset("frey", "train").subset(10)
    val = load_dataset("frey", "val").subset(10)
    cfg = TrainConfig(batch_size=64, out=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="larger than the training set"):
        Trainer(cfg, train, val).fit()


@pytest.mark.slow
def test_compiled_training_with_drop_last_matches_eager(tmp_path):
    """--compile traces the whole step (no graph breaks) and --drop-last keeps one batch shape,
    so the model compiles once; the compiled run trains like the eager one."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # process-global: earlier tests compile too
    eager_cfg = _small(tmp_path, "eager", epochs=1, train_subset=320).replace(batch_size=96,
                                                                              drop_last=True)
    eager = Trainer(eager_cfg).fit()  # 320 images: 3 batches of 96, 32 dropped
    compiled_cfg = eager_cfg.replace(compile=True, out=str(tmp_path / "compiled"))
    compiled = Trainer(compiled_cfg).fit()
    assert eager["step"] == compiled["step"] == 3
    for key in ("train_loss", "val_neg_elbo", "sigma"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4), key
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_curves_are_drawn_after_the_epochs_row_first_and_last(tmp_path, monkeypatch):
    import sigmavae.training.callbacks as callbacks_module  # the CurvePlot callback

    drawn: list[int] = []
    original = callbacks_module.plot_curves

    def counting(metrics_csv, path):
        with metrics_csv.open() as f:
            drawn.append(len(list(csv.DictReader(f))))  # epochs logged when it was drawn
        return original(metrics_csv, path)

    monkeypatch.setattr(callbacks_module, "plot_curves", counting)
    monkeypatch.setattr(callbacks_module, "CURVES_EVERY_S", 3600.0)
    Trainer(_small(tmp_path, "slow-redraw", epochs=3, train_subset=64, val_subset=16)).fit()
    assert drawn == [1, 3]  # the first epoch, then the last one (after its row is written)
    assert (tmp_path / "slow-redraw" / "curves.png").is_file()


@pytest.mark.parametrize(("interval", "expected"), [(3600.0, [1, 4]), (0.0, [1, 2, 3, 4])])
def test_curves_are_redrawn_at_most_every_interval(tmp_path, monkeypatch, interval, expected):
    import sigmavae.training.callbacks as callbacks_module

    calls: list[Path] = []
    monkeypatch.setattr(callbacks_module, "plot_curves", lambda csv_path, png: calls.append(png))
    monkeypatch.setattr(callbacks_module, "CURVES_EVERY_S", interval)
    run = SimpleNamespace(fabric=SimpleNamespace(is_global_zero=True),
                          config=SimpleNamespace(epochs=4), out=tmp_path)
    plot, trainer = callbacks_module.CurvePlot(), SimpleNamespace(run=run)
    drawn = []
    for epoch in range(1, 5):  # state.epoch is the epochs done, after each epoch's row
        before = len(calls)
        plot.on_train_epoch_end(trainer=trainer, state=SimpleNamespace(epoch=epoch), row={},
                                report=None)
        if len(calls) > before:
            drawn.append(epoch)
    assert drawn == expected and calls[0] == tmp_path / "curves.png"


def test_validation_batches_default_to_the_training_batch_size(tmp_path, monkeypatch):
    import sigmavae.training.trainer as trainer_module

    sizes = []
    real = trainer_module.elbo_sums

    def record(model, images, batch_size, **kwargs):
        sizes.append(batch_size)
        return real(model, images, batch_size, **kwargs)

    monkeypatch.setattr(trainer_module, "elbo_sums", record)
    cfg = TrainConfig(data="frey", train_subset=64, val_subset=48, batch_size=32, epochs=1,
                      out=str(tmp_path / "run"), progress=False, accelerator="cpu",
                      speed_hint=False)
    finals = {}
    for val_batch_size, expected in ((None, 32), (16, 16), (48, 48)):
        sizes.clear()
        finals[val_batch_size] = Trainer(cfg.replace(
            val_batch_size=val_batch_size, out=str(tmp_path / str(val_batch_size)))).fit()
        assert sizes == [expected]
    # the batch size does not change the number: the validation noise is per image
    for val_batch_size in (None, 16):
        assert finals[val_batch_size]["val_neg_elbo"] == pytest.approx(
            finals[48]["val_neg_elbo"], rel=1e-6)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compile_mode_reaches_torch_compile(tmp_path, monkeypatch, mode):
    """``--compile --compile-mode M`` compiles the whole training loss with mode M (here with
    a recording stand-in for torch.compile that runs eagerly: no C++ build in the test)."""
    modes = []

    def record(fn, mode="default", **kwargs):
        modes.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", record)
    cfg = TrainConfig(data="frey", train_subset=128, val_subset=64, batch_size=64, epochs=1,
                      out=str(tmp_path / mode), progress=False, accelerator="cpu",
                      compile=True, compile_mode=mode, drop_last=True)
    final = Trainer(cfg).fit()
    assert modes == [mode] and final["step"] == 2
