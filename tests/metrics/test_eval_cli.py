"""``sigmavae eval`` end to end on a tiny trained Frey Face model (trained with Trainer)."""

from __future__ import annotations

import json

import pytest

from sigmavae.cli import main
from sigmavae.metrics import METRICS
from sigmavae.metrics import fid as fid_metric


def test_eval_every_metric_writes_json_markdown_and_plot(frey_run, tmp_path, capsys,
                                                         pool_features):
    out = tmp_path / "eval" / "report.json"
    ckpt = frey_run / "checkpoints" / "last.ckpt"
    code = main(["eval", str(ckpt), "--metrics", "all", "--elbo-samples", "2",
                 "--iwae-samples", "8", "--mi-samples", "100", "--fid-samples", "16",
                 "--fid-features", pool_features, "--limit", "20", "--batch-size", "16",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert {"checkpoint", "data", "split", "likelihood", "likelihood_head", "num_images",
            "data_shape", "data_dims", "data_scaling", "units", "seed", "options",
            "metrics"} <= set(report)
    assert report["data"] == "frey" and report["split"] == "test" and report["num_images"] == 20
    assert report["likelihood"] == "optimal_sigma" and report["data_shape"] == [1, 28, 20]
    metrics = report["metrics"]
    assert list(metrics) == list(METRICS)
    video_only = ("video", "fvd")  # n/a for an image model, with the reason
    assert all(m["available"] for name, m in metrics.items() if name not in video_only), metrics
    assert all("sequence" in metrics[name]["reason"] for name in video_only)
    assert {"neg_elbo_nats_per_image", "neg_elbo_bits_per_dim", "distortion_nll_nats_per_image",
            "rate_kl_nats_per_image"} <= set(metrics["elbo"]["single_sample"])
    assert metrics["elbo"]["multi_sample"]["samples_per_image"] == 2
    assert metrics["elbo"]["effective_beta"] > 0
    assert {"neg_elbo_nats_per_image", "neg_elbo_bits_per_dim",
            "continuous_neg_elbo_nats_per_image"} <= set(metrics["discretized"])
    assert metrics["iwae"]["samples_per_image"] == 8 and set(metrics["iwae"]["by_k"]) == {"1", "8"}
    assert metrics["fid"]["num_real"] == 16 and "custom extractor" in metrics["fid"]["features"]
    assert {"mutual_info_nats", "marginal_kl_nats", "mutual_info_stderr_nats"} <= set(
        metrics["mi"])
    assert metrics["active_units"]["latent_dim"] == 20
    assert set(metrics["calibration"]["coverage"]) == {"0.5", "0.8", "0.9", "0.95"}
    plot = out.with_name("report.calibration.png")
    assert plot.is_file() and metrics["calibration"]["plot"] == str(plot)
    md = out.with_suffix(".md").read_text()
    assert md in printed and "| metric | value | units / notes |" in md
    for label in ("-ELBO (1 sample/image)", "-ELBO (2 samples/image)", "-ELBO, discretised",
                  "-IWAE bound (K=8)", "FID", "mutual information", "marginal KL",
                  "active units", "calibration ECE", "effective beta"):
        assert f"| {label}" in md, label
    assert "nats/image" in md and "bits/dim" in md and "[0, 1]" in md


def test_eval_defaults_and_missing_inception(frey_run, capsys, monkeypatch):
    monkeypatch.setattr(fid_metric, "torch_fidelity_installed", lambda: False)
    ckpt = str(frey_run / "checkpoints" / "last.ckpt")
    assert main(["eval", ckpt, "--limit", "6", "--samples", "1", "--mi-samples", "12",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "| -ELBO (1 sample/image) |" in printed and "IWAE" not in printed
    assert main(["eval", ckpt, "--metrics", "fid", "--limit", "6", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "| FID | n/a | Inception features need the torch-fidelity package" in printed
    assert fid_metric.INCEPTION_WEIGHTS_FILE in printed


@pytest.mark.parametrize(("flag", "tuned"), [([], 1), (["--no-tune-malloc"], 0)])
def test_eval_on_the_cpu_tunes_the_allocator_as_training_does(frey_run, monkeypatch, flag,
                                                               tuned):
    calls = []
    monkeypatch.setattr("sigmavae.run.tune_cpu_allocator", lambda: calls.append(1) or True)
    ckpt = str(frey_run / "checkpoints" / "last.ckpt")
    assert main(["eval", ckpt, "--metrics", "elbo", "--limit", "4", "--samples", "1",
                 "--device", "cpu", *flag]) == 0
    assert len(calls) == tuned


@pytest.mark.parametrize("args, message", [
    (["--metrics", "elbo,bogus"], "unknown metric 'bogus'"),
    (["--iwae-samples", "0"], "--iwae-samples must be >= 1"),
    (["--mi-data", "1"], "--mi-data must be >= 2"),
])
def test_eval_rejects_bad_options(frey_run, capsys, args, message):
    assert main(["eval", str(frey_run / "checkpoints" / "last.ckpt"), *args]) == 2
    assert message in capsys.readouterr().err
