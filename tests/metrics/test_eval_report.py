"""The report runner: metric selection, units in keys, invalid bounds never given as numbers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sigmavae import likelihoods
from sigmavae.metrics import (
    DEFAULT_METRICS,
    METRICS,
    elbo_per_image,
    evaluate,
    evaluate_elbo,
    parse_metrics,
    render_markdown,
    write_report,
)
from sigmavae.models.conv import build_conv_vae

#: Metrics of conditional sequence models only (n/a for these image models).
VIDEO_ONLY = ("video", "fvd")


class Pool4(nn.Module):
    """A 4-feature FID extractor (fast)."""

    num_features = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x[:, :1], (2, 2)).flatten(1)


FAST = {"elbo_samples": 2, "iwae_samples": 4, "mi_samples": 64,
        "fid_features": f"{__name__}:Pool4"}


def _tiny(head_name: str, **options):
    torch.manual_seed(0)
    head = likelihoods.create(head_name, **options)
    return build_conv_vae((1, 8, 8), head, latent_dim=3, channels=(4, 4, 4)).eval()


def _images(n=6, binary=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    return torch.where(images > 127, 255, 0).to(torch.uint8) if binary else images


def test_parse_metrics():
    assert parse_metrics(None) == list(DEFAULT_METRICS) == parse_metrics("default")
    assert parse_metrics("all") == list(METRICS)
    assert parse_metrics("iwae, elbo,iwae") == ["iwae", "elbo"]
    assert parse_metrics(["fid", "default"])[0] == "fid"
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        parse_metrics("elbo,nope")
    with pytest.raises(ValueError):
        parse_metrics(" , ")


def test_elbo_per_image_matches_evaluate_elbo(frey_model, frey_test_images):
    for samples in (1, 3):
        terms = elbo_per_image(frey_model, frey_test_images, batch_size=5, samples=samples, seed=4)
        report = evaluate_elbo(frey_model, frey_test_images, batch_size=7, samples=samples,
                               seed=4)
        assert float(terms.nll.mean()) == pytest.approx(report.nll, rel=1e-5)
        assert float(terms.kl.mean()) == pytest.approx(report.kl, rel=1e-5)
    # effective beta of a shared sigma: 2 sigma^2 with the running sigma of eval mode
    assert terms.effective_beta == pytest.approx(report.effective_beta, rel=1e-5)


def test_full_report_has_units_and_numbers(frey_model, frey_test_images, tmp_path):
    plot = tmp_path / "r.calibration.png"
    report = evaluate(frey_model, frey_test_images[:10], "all", {**FAST, "plot_path": str(plot)},
                      batch_size=8, meta={"data": "frey", "split": "test"},
                      held_out=lambda: frey_test_images[10:20])
    m = report["metrics"]
    assert list(m) == list(METRICS)
    assert all(r["available"] for name, r in m.items() if name not in VIDEO_ONLY)
    for name in VIDEO_ONLY:  # an image model: n/a, with the reason
        assert not m[name]["available"] and "sequence" in m[name]["reason"]
    single = m["elbo"]["single_sample"]
    assert {"neg_elbo_nats_per_image", "neg_elbo_bits_per_dim", "distortion_nll_nats_per_image",
            "rate_kl_nats_per_image"} <= set(single)
    assert single["neg_elbo_nats_per_image"] == pytest.approx(
        single["distortion_nll_nats_per_image"] + single["rate_kl_nats_per_image"])
    assert m["elbo"]["multi_sample"]["samples_per_image"] == 2
    assert set(m["iwae"]["by_k"]) == {"1", "4"} and m["iwae"]["samples_per_image"] == 4
    assert report["data_dims"] == 560 and "density" in report["data_scaling"]
    assert plot.is_file()
    json_path, md_path = write_report(report, tmp_path / "out" / "r.json")
    assert json.loads(json_path.read_text())["metrics"]["mi"]["num_data"] == 10
    md = md_path.read_text()
    assert md == render_markdown(report)
    assert "nats/image" in md and "bits/dim" in md and "| active units |" in md


@pytest.mark.parametrize("head_name", ["optimal_sigma_per_image", "bernoulli"])
def test_invalid_bounds_are_never_numbers(head_name):
    model = _tiny(head_name)
    report = evaluate(model, _images(), "all", FAST, batch_size=4)
    m = report["metrics"]
    assert m["elbo"]["bound_valid"] is False and m["elbo"]["reason"]
    for est in (m["elbo"]["single_sample"], m["elbo"]["multi_sample"]):
        assert set(est) == {"samples_per_image", "rate_kl_nats_per_image",
                            "rate_kl_stderr_nats_per_image"}
    for name in ("discretized", "iwae"):
        assert m[name]["available"] is False and "not a valid bound" in m[name]["reason"]
        assert set(m[name]) == {"available", "reason", "seconds"}
    assert m["mi"]["available"] and m["active_units"]["available"] and m["fid"]["available"]
    if head_name == "bernoulli":
        assert m["calibration"]["available"] is False
    else:
        assert "note" in m["calibration"]
    md = render_markdown(report)
    assert "| -ELBO (1 sample/image) | n/a | not a valid bound:" in md
    assert "| IWAE bound | n/a |" in md


def test_bernoulli_on_binary_data_is_a_valid_bound():
    report = evaluate(_tiny("bernoulli"), _images(binary=True), ["elbo", "iwae", "calibration"],
                      FAST, batch_size=4)
    m = report["metrics"]
    assert m["elbo"]["bound_valid"] and m["elbo"]["single_sample"]["neg_elbo_nats_per_image"] > 0
    assert m["iwae"]["available"] and m["calibration"]["available"]


def test_discrete_head_discretized_elbo_is_its_elbo():
    model = _tiny("categorical")
    report = evaluate(model, _images(), ["elbo", "discretized"], FAST, batch_size=4)
    m = report["metrics"]
    assert m["discretized"]["neg_elbo_nats_per_image"] == pytest.approx(
        m["elbo"]["single_sample"]["neg_elbo_nats_per_image"])
    assert "discrete" in m["discretized"]["head_kind"]
    assert m["elbo"]["effective_beta"] is None


def test_student_t_head_runs_every_metric():
    report = evaluate(_tiny("student_t"), _images(), "all", FAST, batch_size=4)
    # refit_sigma: a Gaussian's sigma, and no held-out data given here
    assert all(r["available"] for name, r in report["metrics"].items()
               if name not in (*VIDEO_ONLY, "refit_sigma"))
    assert not report["metrics"]["refit_sigma"]["available"]
    assert report["metrics"]["discretized"]["neg_elbo_nats_per_image"] > 0


def test_evaluate_checkpoint_is_sigmavae_eval_as_a_call(frey_run, tmp_path):
    """The library does what the CLI's eval does: load, check, evaluate, write."""
    from sigmavae.metrics import EvalOptionError, evaluate_checkpoint

    ckpt = frey_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "e" / "r.json"
    result = evaluate_checkpoint(ckpt, "elbo,calibration", limit=8, elbo_samples=2,
                                 device="cpu", out=out)
    assert list(result.report["metrics"]) == ["elbo", "calibration"]
    assert result.report["checkpoint"] == str(ckpt) and result.report["num_images"] == 8
    assert result.files == [out, out.with_suffix(".md"), out.with_name("r.calibration.png")]
    assert all(p.is_file() for p in result.files)
    assert result.markdown == out.with_suffix(".md").read_text()
    for kwargs, option, detail in [({"iwae_samples": 0}, "iwae_samples", " must be >= 1, got 0"),
                                   ({"metrics": "nope"}, "metrics", ": unknown metric 'nope'"),
                                   ({"device": "tpu"}, "device", ": expected cpu, cuda")]:
        with pytest.raises(EvalOptionError) as info:
            evaluate_checkpoint(ckpt, **kwargs)
        assert info.value.option == option and info.value.detail.startswith(detail)


def test_a_registered_metric_is_selectable_and_listed(capsys, monkeypatch):
    """A metric is its own module with the decorator: --metrics and --help find it."""
    from sigmavae.cli import build_parser
    from sigmavae.metrics import register_metric

    def rows(result):
        return [("toy", str(result["images"]), "images seen")]

    @register_metric("toy_count", "counts the images", title="toy", rows=rows, default=True)
    def run(ctx):
        return {"available": True, "images": int(ctx.images.shape[0])}

    try:
        import sigmavae.metrics

        assert "toy_count" in parse_metrics("all") and "toy_count" in parse_metrics(None)
        assert "toy_count" in sigmavae.metrics.DEFAULT_METRICS  # read when asked
        report = evaluate(_tiny("bernoulli"), _images(3), ["toy_count"], batch_size=4)
        assert report["metrics"]["toy_count"]["images"] == 3
        assert "| toy | 3 | images seen |" in render_markdown(report)
        monkeypatch.setenv("COLUMNS", "10000")
        with pytest.raises(SystemExit):
            build_parser().parse_args(["eval", "--help"])
        assert "toy_count" in capsys.readouterr().out
    finally:
        METRICS.unregister("toy_count")
    assert "toy_count" not in parse_metrics("all")


def test_merge_reports_puts_the_new_metrics_in_place_and_keeps_the_rest():
    from sigmavae.metrics.report import merge_reports

    base = {"data": "frey", "split": "test", "likelihood_head": "gaussian", "num_images": 200,
            "data_shape": [1, 28, 20], "seed": 0, "options": ["elbo_samples", "fid_samples"],
            "metrics": {"elbo": {"neg_elbo": 1.0}, "fid": {"fid": 9.0}}}
    update = {**base, "options": ["fid_samples", "fid_bootstrap"],
              "metrics": {"fid": {"fid": 9.0, "fid_bootstrap_stderr": 0.1}, "mi": {"mi": 2.0}}}
    merged = merge_reports(base, update)
    assert merged["metrics"] == {"elbo": {"neg_elbo": 1.0},
                                 "fid": {"fid": 9.0, "fid_bootstrap_stderr": 0.1},
                                 "mi": {"mi": 2.0}}
    assert merged["options"] == ["elbo_samples", "fid_samples", "fid_bootstrap"]
    assert base["metrics"]["fid"] == {"fid": 9.0}  # the inputs are not changed
    with pytest.raises(ValueError, match="num_images: 200 vs 100; seed: 0 vs 1"):
        merge_reports(base, {**update, "num_images": 100, "seed": 1})
