"""A number that is not a bound is never written or printed as one (console, CSV, JSON, plot)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from sigmavae.data import ImageDataset, load_dataset
from sigmavae.training import TrainConfig, Trainer


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _train(tmp_path: Path, likelihood: str, capsys, train=None, val=None, **options):
    cfg = TrainConfig(data="frey", train_subset=128, val_subset=64, batch_size=64, epochs=2,
                      log_every_n_steps=1, out=str(tmp_path / likelihood), progress=False,
                      likelihood=likelihood, likelihood_options=options)
    final = Trainer(cfg, train, val).fit()
    return Path(cfg.out), final, capsys.readouterr().out


@pytest.mark.parametrize("likelihood", ["optimal_sigma_per_image", "bernoulli"])
def test_invalid_bounds_are_na_with_the_reason_everywhere(tmp_path, capsys, likelihood):
    out, final, console = _train(tmp_path, likelihood, capsys)
    reason = "not a bound: "
    # final.json: no number where the bound would be, and the reason beside it.
    saved = json.loads((out / "final.json").read_text())
    assert saved == json.loads(json.dumps(final))
    for key in ("train_neg_elbo", "val_neg_elbo", "val_bits_per_dim", "val_nll"):
        assert saved[key] == "n/a", key
    assert saved["train_bound_note"].startswith(reason)
    assert saved["val_bound_note"].startswith(reason)
    report = saved["val_report"]
    assert report["valid_bound"] is False and report["invalid_reason"]
    for key in ("neg_elbo", "bits_per_dim", "nll"):
        assert report[key] == "n/a", key
    assert isinstance(report["kl"], float)  # the rate is a property of the encoder: a number
    # CSVs: n/a in every bound cell, the reason in the note column.
    for name in ("steps.csv", "epochs.csv"):
        rows = _rows(out / name)
        assert rows and all(r["train_neg_elbo"] == "n/a" for r in rows), name
        assert all(r["train_bound_note"].startswith(reason) for r in rows), name
        assert math.isfinite(float(rows[-1]["train_loss"]))  # the loss itself is a number
    for r in _rows(out / "epochs.csv"):
        assert r["val_neg_elbo"] == r["val_bits_per_dim"] == "n/a"
        assert r["val_bound_note"].startswith(reason)
    # Console: the epoch lines say "loss" and n/a, never "-ELBO <number>".
    epoch_lines = [line for line in console.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        assert "train loss " in line and "train -ELBO" not in line and "val -ELBO" not in line
        assert "val KL " in line and "nats/image (-ELBO n/a: not a bound)" in line
        assert len(line) < 120, line
    assert "note: the val -ELBO of" in console and "not a bound" in console  # the reasons
    assert (out / "curves.png").is_file()


def test_bernoulli_on_binary_data_is_an_exact_bound(tmp_path, capsys):
    frey = load_dataset("frey", "train").subset(192)
    binary = (frey.images > 127).to(torch.uint8) * 255
    train = ImageDataset(images=binary[:128].contiguous(), name="frey-binary", split="train")
    val = ImageDataset(images=binary[128:].contiguous(), name="frey-binary", split="val")
    _, final, console = _train(tmp_path, "bernoulli", capsys, train, val)
    assert isinstance(final["val_neg_elbo"], float) and isinstance(final["train_neg_elbo"], float)
    assert final["train_bound_note"] is None and final["val_bound_note"] is None
    assert "train -ELBO " in console and "n/a" not in console


def test_optimal_sigma_train_bound_is_labelled_optimistic(tmp_path, capsys):
    out, final, console = _train(tmp_path, "optimal_sigma", capsys)
    assert isinstance(final["train_neg_elbo"], float) and isinstance(final["val_neg_elbo"], float)
    assert final["train_bound_note"].startswith("optimistic: sigma is fitted to each training")
    assert final["val_bound_note"] is None
    assert all(r["train_bound_note"].startswith("optimistic")
               for r in _rows(out / "steps.csv"))
    assert "note: the train -ELBO of optimal_sigma is optimistic" in console
    epoch_lines = [line for line in console.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert all("train -ELBO " in line and " (optimistic), val -ELBO " in line
               and " nats/image = " in line and " bits/dim; sigma " in line and len(line) < 120
               for line in epoch_lines), epoch_lines
    # With the running estimate (App. C's fix) the training bound is unbiased: no note.
    out, final, console = _train(tmp_path / "running", "optimal_sigma", capsys,
                                 train_sigma="running")
    assert final["train_bound_note"] is None and "optimistic" not in console
