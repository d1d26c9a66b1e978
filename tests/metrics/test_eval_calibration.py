"""Calibration: data drawn from the decoder's own distribution is calibrated; a too-narrow
Gaussian is over-confident, a too-wide one under-confident."""

from __future__ import annotations

import pytest
import torch

from sigmavae import likelihoods
from sigmavae.likelihoods import (
    BernoulliHead,
    CategoricalHead,
    DiscretizedLogisticHead,
    FixedSigmaGaussian,
    StudentTHead,
)
from sigmavae.metrics import (
    EvalContext,
    MetricUnavailable,
    PITHistogram,
    pit_values,
    plot_calibration,
)
from sigmavae.metrics import calibration as cal_metric
from sigmavae.metrics.calibration import DEFAULT_LEVELS
from sigmavae.models.conv import build_conv_vae

SHAPE = (64, 1, 16, 16)  # 16384 values


def _summary(dist, target, seed=0) -> dict:
    acc = PITHistogram()
    acc.add(pit_values(dist, target, torch.Generator().manual_seed(seed)))
    return acc.summary()


def _quantise(x: torch.Tensor) -> torch.Tensor:
    """Continuous draws -> 8-bit data / 255 (edge bins open: clamp)."""
    return torch.round(x.clamp(0, 1) * 255) / 255


@pytest.mark.parametrize("sigma", [0.0015, 0.03, 0.3])
def test_own_gaussian_samples_are_calibrated(sigma):
    g = torch.Generator().manual_seed(0)
    loc = torch.rand(SHAPE, generator=g) * 0.8 + 0.1
    head = FixedSigmaGaussian(sigma=sigma, mean_activation="identity")
    x = _quantise(loc + sigma * torch.randn(SHAPE, generator=g))
    out = _summary(head(loc), x)
    assert out["ece"] < 0.01, out
    assert out["pit_tv"] < 0.03
    for level in DEFAULT_LEVELS:
        assert out["coverage"][f"{level:g}"] == pytest.approx(level, abs=0.015)


def test_too_narrow_gaussian_is_overconfident_and_too_wide_underconfident():
    g = torch.Generator().manual_seed(1)
    loc = torch.rand(SHAPE, generator=g) * 0.6 + 0.2
    x = _quantise(loc + 0.05 * torch.randn(SHAPE, generator=g))
    narrow = _summary(FixedSigmaGaussian(sigma=0.02, mean_activation="identity")(loc), x)
    wide = _summary(FixedSigmaGaussian(sigma=0.15, mean_activation="identity")(loc), x)
    for level in DEFAULT_LEVELS:
        assert narrow["coverage"][f"{level:g}"] < level - 0.1
        assert wide["coverage"][f"{level:g}"] > level + 0.03
    assert narrow["ece_signed"] < -0.1 and narrow["ece"] > 0.1
    assert wide["ece_signed"] > 0.05
    hist = narrow["pit_histogram"]  # U-shaped
    assert hist[0] > 3 / len(hist) and hist[-1] > 3 / len(hist) and hist[10] < 1 / len(hist)


def test_own_samples_of_discrete_heads_are_calibrated():
    g = torch.Generator().manual_seed(2)
    shape = (32, 1, 16, 16)
    logits = torch.randn(shape[0], 256, *shape[2:], generator=g) * 2
    dist = CategoricalHead()(logits)
    torch.manual_seed(0)
    assert _summary(dist, dist.sample())["ece"] < 0.015
    loc = torch.rand(shape, generator=g)
    dist = DiscretizedLogisticHead(scale=0.01)(loc)
    assert _summary(dist, dist.sample())["ece"] < 0.015
    dist = BernoulliHead()(torch.randn(shape, generator=g))
    assert _summary(dist, dist.sample())["ece"] < 0.015


def test_own_samples_of_student_t_are_calibrated():
    g = torch.Generator().manual_seed(3)
    params = torch.cat([torch.randn(SHAPE, generator=g), torch.full(SHAPE, -3.0),
                        torch.zeros(SHAPE)], dim=1)  # loc, log-scale, raw df
    dist = StudentTHead()(params)
    torch.manual_seed(0)
    x = _quantise(dist.base_dist.sample())
    assert _summary(dist, x)["ece"] < 0.01


def test_pit_histogram_coverage_and_plot(tmp_path):
    acc = PITHistogram()
    acc.add(torch.linspace(0, 1, 100_001, dtype=torch.float64))
    out = acc.summary()
    assert out["ece"] < 1e-3 and out["pit_tv"] < 1e-3
    assert sum(out["pit_histogram"]) == pytest.approx(1.0)
    assert [c for c, _ in out["coverage_curve"]][-1] == 0.99
    path = plot_calibration(out, tmp_path / "sub" / "cal.png", title="uniform")
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


def test_calibration_metric_on_a_trained_model(frey_model, frey_test_images, tmp_path):
    ctx = EvalContext(frey_model, frey_test_images, batch_size=10,
                      options={"plot_path": str(tmp_path / "c.png"), "title": "frey"})
    out = cal_metric.run(ctx)
    assert out["available"] and out["num_values"] == 24 * 28 * 20
    assert set(out["coverage"]) == {"0.5", "0.8", "0.9", "0.95"}
    assert 0 <= out["ece"] <= 1 and (tmp_path / "c.png").is_file()


# -- which heads are calibrated, and the note: the head answers (bound_validity, fits_test_data) --
def _tiny_model(head):
    torch.manual_seed(0)
    return build_conv_vae((1, 8, 8), head, latent_dim=3, channels=(4, 4, 4)).eval()


def _tiny_images(binary: bool = False) -> torch.Tensor:
    images = torch.randint(0, 256, (6, 1, 8, 8), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    return torch.where(images > 127, 255, 0).to(torch.uint8) if binary else images


class _UnnormalisedGaussian(FixedSigmaGaussian):
    """A head that declares no valid bound for a reason of its own (not fitted to the data)."""

    valid_bound = False
    invalid_bound_reason = "this test head's density is not normalised over the data"


def test_head_fitted_to_the_scored_data_gets_the_flattered_note():
    head = likelihoods.create("optimal_sigma_per_image")
    assert head.fits_test_data and not head.bound_validity(_tiny_images())[0]
    out = cal_metric.run(EvalContext(_tiny_model(head), _tiny_images(), batch_size=3))
    assert out["available"]
    assert out["note"] == ("calibration is flattered: the head's parameters are fitted to the "
                           f"evaluated images themselves ({head.invalid_bound_reason})")
    rows = cal_metric.markdown_rows(out)
    assert rows[-1] == ("calibration note", "", out["note"])


def test_head_without_a_distribution_over_the_data_is_unavailable_with_its_own_reason():
    images = _tiny_images()
    bernoulli = BernoulliHead()
    with pytest.raises(MetricUnavailable) as info:
        cal_metric.run(EvalContext(_tiny_model(bernoulli), images, batch_size=3))
    message = str(info.value)
    assert message.startswith("bernoulli on these data is not a distribution over the data, so "
                              "it has no predictive CDF to calibrate (")
    assert bernoulli.invalid_bound_reason in message and "\n" not in message
    # not "the head's sigma depends on the test image itself": that is only per-image sigma
    with pytest.raises(MetricUnavailable, match="no predictive CDF") as info:
        cal_metric.run(EvalContext(_tiny_model(_UnnormalisedGaussian(sigma=0.1)), images))
    assert "this test head's density is not normalised over the data" in str(info.value)
    assert "sigma depends on the test image" not in str(info.value)


def test_heads_with_a_valid_bound_get_no_note():
    for head, images in ((BernoulliHead(), _tiny_images(binary=True)),  # exact on binary data
                         (FixedSigmaGaussian(sigma=0.1), _tiny_images())):
        out = cal_metric.run(EvalContext(_tiny_model(head), images, batch_size=4))
        assert out["available"] and "note" not in out
