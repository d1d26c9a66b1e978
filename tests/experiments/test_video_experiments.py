"""The video experiments end to end on a tiny SVG-LP: report, figures, CSV units, verdict; the
BAIR column as a paper-preset plan; what ``all`` leaves out on the quick preset."""

from __future__ import annotations

import csv
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from sigmavae.experiments import video
from sigmavae.experiments.driver import run_experiments
from sigmavae.experiments.presets import PRESETS, ExperimentError
from sigmavae.experiments.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

pytestmark = pytest.mark.slow

TINY = replace(PRESETS["quick"], name="tiny", seeds=1, notes=())
#: 4-frame sequences (2 given, 2 predicted) trained; scored on 5 frames (3 predicted)
TINY_SIZES = video.VideoSizes(
    model_options={"backbone": "dcgan", "g_dim": 8, "z_dim": 2, "context_frames": 2,
                   "width": 4, "rnn_size": 8},
    train_sequences=8, val_sequences=4, epochs=1, batch_size=4, lr=2e-3, seeds=1,
    eval_sequences=4, video_samples=2, log_every_n_steps=1, eval_frames=5,
    notes=("tiny: a test",))


@pytest.fixture(scope="module")
def tiny_video(mnist_test_root: Path, tmp_path_factory: pytest.TempPathFactory):
    video.SIZES[("video", "tiny")] = TINY_SIZES
    tmp = tmp_path_factory.mktemp("video")
    try:
        outcome = run_experiments(
            "video", preset=TINY, out=tmp / "out", runs_dir=tmp / "runs", data="smmnist",
            data_root=str(mnist_test_root), data_options={"frames": 4, "sequences": 16},
            command="sigmavae experiment video --preset tiny", log=lambda m: None)
    finally:
        del video.SIZES[("video", "tiny")]
    return tmp, outcome


def test_video_report_has_both_objectives_figures_and_a_verdict(tiny_video):
    tmp, outcome = tiny_video
    report = outcome.reports["video"]
    text = report.read_text()
    assert "| objective |" in text and "nats/sequence" in text
    assert "optimal sigma-VAE" in text and "SVG's objective (MSE + 1e-4 KL)" in text
    assert "SVG-LP with a calibrated decoder and no beta" in text
    assert outcome.sections["video"].verdicts[0].status in (REPRODUCED, NOT_REPRODUCED,
                                                            INCONCLUSIVE)
    for name in ("psnr-ssim.png", "samples.png"):
        png = report.parent / name
        assert png.is_file() and png.stat().st_size > 5_000
        assert f"]({name})" in text
    with (report.parent / "runs.csv").open(newline="") as f:
        rows = {r["row"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"optimal_sigma", "beta_vae"}
    assert rows["beta_vae"]["objective"] == "original"
    assert rows["optimal_sigma"]["objective"] == "elbo"
    # SVG's objective trains the fixed-sigma head whose bound it is: a valid, finite bound
    assert float(rows["beta_vae"]["neg_elbo_nats_per_sequence"]) > 0
    run = tmp / "runs" / rows["beta_vae"]["run_id"]
    assert rows["beta_vae"]["run_id"].startswith("svg-original-s0-")
    evaluation = (run / "eval.json").read_text()
    # the eval scored 5-frame test sequences (the --data-option override): 3 predicted frames
    assert '"future_frames": 3' in evaluation
    # SVG's network rescored with a sigma fitted on the validation sequences: its own row
    assert "SVG's network, sigma refitted on validation data" in text
    assert float(rows["beta_vae"]["sigma_refit_on_val"]) > 0
    assert rows["optimal_sigma"]["sigma_refit_on_val"] == ""


def test_video_records_keep_the_prediction_strips(tiny_video, mnist_test_root, tmp_path):
    """A video report rebuilt from the records alone (no checkpoints) still shows the strips."""
    tmp, _ = tiny_video
    video.SIZES[("video", "tiny")] = TINY_SIZES
    try:
        options = dict(preset=TINY, data="smmnist", data_root=str(mnist_test_root),
                       data_options={"frames": 4, "sequences": 16}, collect=True,
                       command="sigmavae experiment video --preset tiny", log=lambda m: None)
        run_experiments("video", out=tmp_path / "first", runs_dir=tmp / "runs",
                        records=tmp_path / "records", **options)
        rebuilt = run_experiments("video", out=tmp_path / "second",
                                  runs_dir=tmp_path / "records", **options)
    finally:
        del video.SIZES[("video", "tiny")]
    strips = sorted((tmp_path / "records").glob("*/prediction-strip-*.png"))
    assert len(strips) == 2
    assert (rebuilt.reports["video"].parent / "samples.png").is_file()
    assert "](samples.png)" in rebuilt.reports["video"].read_text()


def test_video_runs_are_reused(tiny_video, mnist_test_root):
    tmp, _ = tiny_video
    messages: list[str] = []
    video.SIZES[("video", "tiny")] = TINY_SIZES
    try:
        run_experiments("video", preset=TINY, out=tmp / "out", runs_dir=tmp / "runs",
                        data="smmnist", data_root=str(mnist_test_root),
                        data_options={"frames": 4, "sequences": 16}, log=messages.append)
    finally:
        del video.SIZES[("video", "tiny")]
    assert any("2 of 2 runs already evaluated, 0 to run" in m for m in messages)


def test_bair_is_a_paper_preset_plan(tmp_path):
    outcome = run_experiments("bair", preset="paper", out=tmp_path / "out", plan=True,
                              log=lambda m: None)
    assert outcome.plan is not None
    lines = outcome.plan.commands.read_text().splitlines()
    assert len(lines) == len(video.BAIR_ROWS) * 3  # 9 rows of Table 2's column x 3 seeds
    args = [shlex.split(line.split(" && ")[1]) for line in lines]
    for arg in args:  # SVG's objective is also rescored with a sigma fitted on held-out data
        original = any("svg-original-" in a for a in arg)
        assert arg[arg.index("--metrics") + 1] == (
            "elbo,video,fid,refit_sigma" if original else "elbo,video,fid")
        last_features = max(i for i, a in enumerate(arg) if a == "--fid-features")
        assert "frames=30" in arg and arg[last_features + 1] == "inception"
    configs = sorted((tmp_path / "out" / "runs").glob("*/train.yaml"))
    assert len(configs) == len(lines)
    original = [c for c in configs if c.parent.name.startswith("svg-original-")]
    assert len(original) == 3 and "objective: original" in original[0].read_text()
    assert "backbone: vgg" in original[0].read_text()


def test_bair_on_the_cpu_preset_is_one_line(tmp_path):
    with pytest.raises(ExperimentError, match="--preset paper"):
        run_experiments("bair", preset="quick", out=tmp_path / "out", plan=True,
                        log=lambda m: None)


def test_all_leaves_bair_out_of_a_cpu_run(tmp_path, monkeypatch):
    messages: list[str] = []
    # a plan reads no data: no CIFAR extraction, no MNIST copy, no classifier training
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    outcome = run_experiments("all", preset="quick", out=tmp_path / "out", plan=True,
                              log=messages.append)
    assert any(m.startswith("experiment bair: runs with --preset paper only") for m in messages)
    text = outcome.plan.commands.read_text() if outcome.plan else ""
    assert "svg-optimal_sigma-" in text and "svg-original-" in text
    assert "--fid-features inception" not in text
    assert not (tmp_path / "cache").exists()
