"""A video model from the command line, end to end: ``sigmavae train`` of SVG-LP on Stochastic
Moving MNIST (the shipped MNIST test digits) with the calibrated and the original objective,
``sigmavae eval`` with the video metrics and ``sigmavae sample`` writing a strip and a GIF."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from sigmavae.cli import main

TINY_SVG = ["--model", "svg", "--model-option", "backbone=dcgan",
            "--model-option", "context_frames=2", "--model-option", "width=4",
            "--model-option", "g_dim=8", "--model-option", "z_dim=2",
            "--model-option", "rnn_size=8"]

@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(tmp_path, root, name: str, *extra: str):
    out = tmp_path / name
    code = main(["train", "--data", "smmnist", "--data-root", str(root),
                 "--data-option", "frames=4", "--data-option", "sequences=8", *TINY_SVG,
                 "--epochs", "1", "--batch-size", "4", "--num-samples", "4", "--no-progress",
                 "--out", str(out), *extra])
    assert code == 0
    return out


def test_svg_trains_evaluates_and_samples_from_the_command_line(tmp_path, mnist_test_root,
                                                                capsys, pool_features):
    out = _train(tmp_path, mnist_test_root, "calibrated")
    log = capsys.readouterr().out
    assert "nats/sequence" in log  # 2 predicted 64x64 frames per sequence:
    assert "(nats per sequence: summed over its 8192 dims" in log
    ckpt = out / "checkpoints" / "last.ckpt"
    assert (out / "samples" / "epoch_0001.png").is_file()

    report_path = tmp_path / "eval.json"
    assert main(["eval", str(ckpt), "--metrics", "elbo,video,fid", "--video-samples", "3",
                 "--fid-features", pool_features, "--fid-samples", "8", "--limit", "4",
                 "--elbo-samples", "2", "--device", "cpu", "--out", str(report_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["example"] == "sequence" and report["data_dims"] == 2 * 64 * 64
    assert "nats per sequence" in printed
    metrics = report["metrics"]
    assert all(metrics[name]["available"] for name in ("elbo", "video", "fid")), metrics
    video = metrics["video"]
    ssim, psnr = video["ssim_per_step"], video["psnr_db_per_step"]
    assert len(ssim) == len(psnr) == 2 and all(-1 <= s <= 1 for s in ssim)
    assert all(math.isfinite(p) and p > 0 for p in psnr)
    assert (tmp_path / "eval.video.png").is_file()

    strip, gif = tmp_path / "strip.png", tmp_path / "strip.gif"
    assert main(["sample", str(ckpt), "--n", "2", "--samples", "2", "--data-root",
                 str(mnist_test_root), "--out", str(strip), "--gif", str(gif)]) == 0
    assert "2 test sequences x 2 samples" in capsys.readouterr().out
    with Image.open(strip) as image:
        assert image.size == (4 * 66 + 2, 2 * 3 * 66 + 2)  # truth + 2 samples per sequence
    with Image.open(gif) as image:
        assert image.n_frames == 4
    # its continuations are decoder means only: --draws is refused, nothing written
    assert main(["sample", str(ckpt), "--draws", "--out", str(tmp_path / "draws.png")]) == 2
    assert "--draws: a video model's continuations are its decoder means" in \
        capsys.readouterr().err
    assert not (tmp_path / "draws.png").exists()


def test_the_original_objective_reports_the_fixed_sigma_bound(tmp_path, mnist_test_root):
    out = _train(tmp_path, mnist_test_root, "original", "--objective", "original")
    final = json.loads((out / "final.json").read_text())
    # SVG's MSE + 1e-4 KL is the fixed-sigma head with 2 sigma^2 = 1e-4 * 64 * 64
    assert final["effective_beta"] == pytest.approx(1e-4 * 64 * 64, rel=1e-5)
    assert final["val_bound_note"] is None and math.isfinite(final["val_neg_elbo"])
    config = json.loads((out / "config.json").read_text())
    assert config["objective"] == "original" and config["likelihood"] == "fixed_sigma"


def test_eval_of_a_video_checkpoint_with_the_default_metrics(tmp_path, mnist_test_root):
    """``sigmavae eval CKPT`` with no --metrics: every default metric either reports numbers or
    says why it cannot; the discretised ELBO scores the predicted frames of each sequence (a mass:
    >= 0 nats, per sequence, over its 2 x 64 x 64 predicted dims)."""
    out = _train(tmp_path, mnist_test_root, "calibrated")
    report_path = tmp_path / "default.json"
    assert main(["eval", str(out / "checkpoints" / "last.ckpt"), "--limit", "4",
                 "--fid-samples", "8", "--fid-features", "pixels", "--device", "cpu",
                 "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert "discretized" in report["metrics"]  # a default metric
    assert all(m["available"] or m.get("reason") for m in report["metrics"].values())
    disc = report["metrics"]["discretized"]
    assert disc["available"], disc
    nats = disc["neg_elbo_nats_per_image"]  # per sequence, as every number of a sequence model
    assert math.isfinite(nats) and nats >= 0
    assert disc["neg_elbo_bits_per_dim"] == pytest.approx(nats / (2 * 64 * 64 * math.log(2)))
