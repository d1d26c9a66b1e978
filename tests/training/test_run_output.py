"""What a run shows and logs: progress on a terminal and in a log file (no bar garbage), the
short epoch line, TensorBoard events read back with tensorboard's own reader (tags, images,
hyperparameters), and a library run that changes nothing outside it (no allocator setting,
no start-up timing) while the command line keeps both."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

import sigmavae.run as run_module
import sigmavae.training as training_module
import sigmavae.training.trainer as trainer_module
from sigmavae.cli import main
from sigmavae.metrics.report import evaluate_checkpoint
from sigmavae.training import TrainConfig, Trainer
from sigmavae.training.callbacks import ProgressBar

STEPS = 3  # 96 training images in batches of 32


class Terminal(io.StringIO):
    """What tqdm writes to a terminal (``isatty()``)."""

    def isatty(self) -> bool:
        return True


def _config(out: Path, **kw: Any) -> TrainConfig:
    values = {"data": "frey", "train_subset": 96, "val_subset": 32, "batch_size": 32,
              "epochs": 2, "latent_dim": 4, "seed": 1, "log_every_n_steps": 1,
              "num_samples": 16, "accelerator": "cpu", "out": str(out), **kw}
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One library run of 2 epochs with progress on (the default bar, its stderr replaced by a
    log file's stand-in), a bar on a terminal and one writing plain lines every step; the
    allocator setting recorded instead of made."""
    out = tmp_path_factory.mktemp("run") / "run"
    terminal, every_step, stderr, stdout = Terminal(), io.StringIO(), io.StringIO(), io.StringIO()
    allocator: list[int] = []
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr), \
            contextlib.redirect_stdout(stdout):
        patch.setattr(trainer_module, "tune_cpu_allocator", lambda: allocator.append(1))
        final = Trainer(_config(out), callbacks=[ProgressBar(stream=terminal),
                                                 ProgressBar(every_s=0.0, stream=every_step)]
                        ).fit()
    with (out / "epochs.csv").open(newline="") as f:
        epochs = list(csv.DictReader(f))
    return {"out": out, "final": final, "epochs": epochs, "terminal": terminal.getvalue(),
            "every_step": every_step.getvalue(), "stderr": stderr.getvalue(),
            "stdout": stdout.getvalue(), "allocator": allocator}


def test_a_log_file_gets_plain_lines_and_no_bar(run):
    log = run["stderr"] + run["stdout"]
    assert "\r" not in log and "\x1b" not in log and "%|" not in log
    # the default: a line after the run's first step (then every 30 s)
    first = run["stderr"].splitlines()[0]
    assert re.fullmatch(r"epoch 1/2 step 1/3: loss -?[\d.]+ nats/image \(epoch mean\), "
                        r"sigma [\d.]+, beta [\d.e-]+; [\d.e+-]+ steps/s", first), first
    # every step with every_s=0; the last step's running mean is the epoch's train loss
    lines = run["every_step"].splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"epoch {e}/2 step {s}/{STEPS}" for e in (1, 2) for s in range(1, STEPS + 1)]
    for epoch, row in enumerate(run["epochs"], start=1):
        last = lines[epoch * STEPS - 1]
        assert f"loss {float(row['train_loss']):.1f} nats/image (epoch mean)" in last, last
        assert f"sigma {float(row['sigma']):.4g}" in last  # the head's sigma after the step


def test_a_terminal_gets_a_bar_with_loss_sigma_beta_and_validation(run):
    bar = run["terminal"]
    assert "\r" in bar  # tqdm redraws in place
    assert "epoch 1/2" in bar and "epoch 2/2" in bar and ("step/s" in bar or "s/step" in bar)
    draws = [d for d in bar.split("\r") if "loss " in d]
    assert draws and all(re.search(r"loss -?[\d.]+ nats/image, sigma [\d.]+, beta [\d.e-]+",
                                   d) for d in draws)
    assert "epoch 1/2 validating 32 images" in bar
    # the epoch's last step: its running mean is the epoch's train loss
    last = run["epochs"][0]
    assert f"loss {float(last['train_loss']):.1f} nats/image" in bar


def test_the_epoch_line_is_short_and_states_units(run):
    lines = run["stdout"].splitlines()
    assert "(nats per image: summed over its 560 dims; data: continuous density on 8-bit" in (
        run["stdout"])
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for line, row in zip(epoch_lines, run["epochs"], strict=True):
        assert len(line) < 120, line
        assert line.startswith(f"epoch {row['epoch']}/2: train -ELBO "
                               f"{float(row['train_neg_elbo']):.1f} (optimistic), val -ELBO "
                               f"{float(row['val_neg_elbo']):.1f} nats/image = "
                               f"{float(row['val_bits_per_dim']):.4g} bits/dim; sigma "), line
        assert line.endswith(f"; {float(row['seconds']):.1f} s")


def _events(out: Path) -> EventAccumulator:
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return events


def test_tensorboard_has_plain_tags_the_grids_and_the_hyperparameters(run):
    out, epochs = run["out"], run["epochs"]
    events = _events(out)
    tags = events.Tags()
    scalars = set(tags["scalars"])
    assert {"train/loss", "train/nll", "train/kl", "train/neg_elbo", "train/sigma",
            "train/effective_beta", "val/neg_elbo", "val/bits_per_dim", "val/kl",
            "epoch/train_loss", "epoch/sigma", "epoch/seconds"} <= scalars
    assert not [t for t in scalars if re.search(r"(\w+)/\1_", t)]  # no train/train_loss
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 2 * STEPS + 1))
    val = events.Scalars("val/neg_elbo")
    assert [e.step for e in val] == [STEPS, 2 * STEPS]
    assert [e.value for e in val] == pytest.approx([float(r["val_neg_elbo"]) for r in epochs])
    # the grids, as written to the PNGs, at the epochs' last steps
    assert {"samples", "reconstructions"} <= set(tags["images"])
    for tag, folder in (("samples", "samples"), ("reconstructions", "reconstructions")):
        images = events.Images(tag)
        assert [i.step for i in images] == [STEPS, 2 * STEPS]
        png = Image.open(out / folder / "epoch_0002.png")
        assert (images[-1].width, images[-1].height) == png.size
    # the config as hyperparameters, with the final metrics
    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content[hparams_metadata.SESSION_START_INFO_TAG]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(1e-3)
    assert start.hparams["likelihood"].string_value == "optimal_sigma"
    assert start.hparams["batch_size"].number_value == 32
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content[hparams_metadata.EXPERIMENT_TAG]).experiment
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert {"final/val_neg_elbo", "final/val_bits_per_dim", "final/train_loss"} <= metric_tags
    final = events.Scalars("final/val_neg_elbo")
    assert final[-1].value == pytest.approx(run["final"]["val_neg_elbo"])


def test_library_use_leaves_the_process_alone_unless_asked(run, monkeypatch, tmp_path):
    # the run above: no allocator setting (tune_malloc null), no timing (speed_hint null)
    assert run["allocator"] == []
    assert TrainConfig().tune_malloc is None and TrainConfig().speed_hint is None
    # evaluation: none either, unless asked (sigmavae eval asks)
    calls: list[int] = []
    monkeypatch.setattr(run_module, "tune_cpu_allocator", lambda: calls.append(1))
    ckpt = run["out"] / "checkpoints" / "last.ckpt"
    evaluate_checkpoint(ckpt, "elbo", limit=16, device="cpu")
    assert calls == []
    assert main(["eval", str(ckpt), "--metrics", "elbo", "--limit", "16", "--device",
                 "cpu"]) == 0
    assert calls == [1]


class FakeTrainer:
    """Records the config ``sigmavae train`` trains with."""

    configs: ClassVar[list[TrainConfig]] = []

    def __init__(self, config: TrainConfig, **kw: Any) -> None:
        self.configs.append(config)

    def fit(self, resume: Any = None) -> dict[str, Any]:
        return {}


def test_the_command_line_keeps_its_defaults_and_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(training_module, "Trainer", FakeTrainer)
    FakeTrainer.configs = []
    base = ["train", "--data", "frey", "--train-subset", "64"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--no-tune-malloc"]) == 0
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: frey\nspeed_hint: false\nout: {tmp_path / 'c'}\n")
    assert main(["train", "--config", str(cfg)]) == 0
    assert [(c.tune_malloc, c.speed_hint) for c in FakeTrainer.configs] == [
        (True, True), (False, True), (True, False)]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "null: off in the library, on in sigmavae train (default: on)" in help_text
