"""FID through torchmetrics with custom feature extractors; missing Inception weights."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from sigmavae.metrics import (
    EvalContext,
    MetricUnavailable,
    build_fid_metric,
    evaluate,
    fid_from_images,
)
from sigmavae.metrics import fid as fid_metric
from sigmavae.metrics.fid import FeatureExtractorError, check_fid_features


class Flatten64(nn.Module):
    """An identity feature map in float64: (N, 3, H, W) -> (N, 3 H W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).double()


class Pool8(nn.Module):
    """A small extractor: 2x2 average pools of two channels, 8 features."""

    num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x[:, :2], (2, 2)).flatten(1)


class Pool4(nn.Module):
    """2x2 average pools of the first channel: 4 features, full rank on grey images (whose
    repeated channels make :class:`Pool8`'s features rank 4)."""

    num_features = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x[:, :1], (2, 2)).flatten(1)


def closed_form_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_of_two_gaussians_through_an_identity_map_is_the_closed_form():
    g = torch.Generator().manual_seed(0)
    d, n = 6, 3000
    mix1 = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5
    mix2 = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.3
    real = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix1
    fake = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix2 + 0.4
    metric, _ = build_fid_metric(f"{__name__}:Flatten64", (3, 1, 2))
    value = fid_from_images(metric, real.view(n, 3, 1, 2), fake.view(n, 3, 1, 2), batch_size=700)
    expected = closed_form_fid(real.numpy(), fake.numpy())
    assert value == pytest.approx(expected, rel=1e-6)
    # the population value: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))
    s1, s2 = (mix1.T @ mix1).numpy(), (mix2.T @ mix2).numpy()
    population = 6 * 0.4**2 + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert value == pytest.approx(population, rel=0.1)
    assert fid_from_images(metric, real.view(n, 3, 1, 2), real.view(n, 3, 1, 2)) == pytest.approx(
        0.0, abs=1e-8)


def test_bootstrap_stderr_is_the_spread_of_the_distance_over_resampled_features():
    """The same resamples through scipy's closed form give the same standard deviation."""
    g = torch.Generator().manual_seed(1)
    real = torch.randn(400, 3, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 3, generator=g, dtype=torch.float64) * 1.3 + 0.2
    se = fid_metric.bootstrap_stderr(real, fake, resamples=12, seed=7)
    draws = torch.Generator().manual_seed(7)
    values = []
    for _ in range(12):
        i = torch.randint(400, (400,), generator=draws)
        j = torch.randint(300, (300,), generator=draws)
        values.append(closed_form_fid(real[i].numpy(), fake[j].numpy()))
    assert se == pytest.approx(float(np.std(values, ddof=1)), rel=1e-6)
    assert fid_metric.bootstrap_stderr(real, fake, resamples=1) is None


def test_bootstrap_stderr_matches_the_spread_of_fid_over_fresh_sample_sets():
    """What it estimates: how much FID moves from one set of N samples and N test images to
    another, here for two fixed Gaussians (the true spread from 150 fresh pairs of sets)."""
    g = torch.Generator().manual_seed(2)
    d, n = 4, 500
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.4

    def fresh() -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(n, d, generator=g, dtype=torch.float64),
                torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + 0.3)

    true_sd = float(np.std([closed_form_fid(*(t.numpy() for t in fresh())) for _ in range(150)],
                           ddof=1))
    estimates = [fid_metric.bootstrap_stderr(*fresh(), resamples=40, seed=k) for k in range(5)]
    for se in estimates:
        assert 0.6 * true_sd < se < 1.6 * true_sd


def test_fid_metric_reports_the_value_of_the_summed_features_and_its_stderr(frey_model,
                                                                             frey_test_images):
    """The metric's FID is torchmetrics' (the features summed batch by batch, its result
    rounded to the features' float32) to that precision, with a bootstrap SE; 0 resamples give
    none."""
    options = {"fid_samples": 64, "fid_features": f"{__name__}:Pool4", "fid_bootstrap": 10}
    out = fid_metric.run(EvalContext(frey_model, frey_test_images, batch_size=16, seed=3,
                                     options=options))
    metric, _ = build_fid_metric(options["fid_features"], tuple(frey_test_images.shape[1:]))
    n = out["num_real"]  # at most the test images there are
    real = fid_metric.to_rgb(frey_test_images[:n])
    fake = fid_metric.to_rgb(fid_metric.prior_samples(
        frey_model, n, fid_metric.stream_seed(3, "fid_prior"), 16))
    assert out["fid"] == pytest.approx(fid_from_images(metric, real, fake, 16), rel=1e-6)
    assert out["bootstrap_resamples"] == 10 and out["fid_bootstrap_stderr"] > 0
    row = fid_metric.markdown_rows(out)[0]
    assert " ± " in row[1] and "bootstrap SE over the samples and test images" in row[2]
    none = fid_metric.run(EvalContext(frey_model, frey_test_images, batch_size=16, seed=3,
                                      options={**options, "fid_bootstrap": 0}))
    assert none["fid"] == out["fid"] and none["fid_bootstrap_stderr"] is None


def test_custom_extractor_specs(tmp_path):
    path = tmp_path / "feats.py"
    path.write_text("from torch import nn\n\ndef features():\n    return nn.Flatten()\n\n"
                    "INSTANCE = nn.Flatten()\n\ndef bad():\n    return 3\n")
    for spec in (f"{path}:features", f"{path}:INSTANCE", "pixels"):
        metric, desc = build_fid_metric(spec, (3, 4, 4))
        assert metric.used_custom_model and desc
    for spec, match in ((f"{path}:bad", "not an nn.Module"), (f"{path}:nope", "no attribute"),
                        ("nocolon", "expected module:function"),
                        (f"{tmp_path}/missing.py:f", "no such file"),
                        ("no_such_module_xyz:f", "cannot import")):
        with pytest.raises(ValueError, match=match):
            build_fid_metric(spec, (3, 4, 4))


def test_missing_torch_fidelity_is_reported_with_where_to_put_the_weights(monkeypatch):
    monkeypatch.setattr(fid_metric, "torch_fidelity_installed", lambda: False)
    with pytest.raises(MetricUnavailable) as info:
        build_fid_metric(None, (3, 28, 20))
    message = str(info.value)
    assert "pip install torch-fidelity" in message
    assert fid_metric.INCEPTION_WEIGHTS_FILE in message
    assert str(fid_metric.inception_weights_location().parent) in message
    assert "\n" not in message


def test_fid_metric_on_a_trained_model(frey_model, frey_test_images):
    ctx = EvalContext(frey_model, frey_test_images, batch_size=10,
                      options={"fid_samples": 16, "fid_features": f"{__name__}:Pool8"})
    out = fid_metric.run(ctx)
    assert out["available"] and out["num_real"] == out["num_fake"] == 16
    assert out["fid"] > 0
    with pytest.raises(FeatureExtractorError, match="cannot import"):  # an error, not n/a
        fid_metric.run(EvalContext(frey_model, frey_test_images,
                                   options={"fid_features": "no_such_module_xyz:f"}))
    samples = fid_metric.prior_samples(frey_model, 5, seed=1, batch_size=2)
    assert samples.shape == (5, 1, 28, 20)
    assert 0 <= float(samples.min()) <= float(samples.max()) <= 1


# -- a feature extractor the user named that cannot be used is an error, never "FID n/a" ---------
_FEATURES_PY = """\
import torch
from torch import nn

NUMBER = 3


def needs_an_argument(width):
    return nn.Flatten()


def explodes():
    raise RuntimeError("no GPU here")


def a_number():
    return 3


class _Scalar(nn.Module):
    def forward(self, x):
        return x.mean()


def scalar_features():
    return _Scalar()


class _Broken(nn.Module):
    def forward(self, x):
        return x @ torch.ones(7, 7)


def broken_features():
    return _Broken()
"""


def _bad_specs(tmp_path: Path) -> list[tuple[str, str]]:
    """(spec, what the message says after the quoted spec)."""
    feats = tmp_path / "feats.py"
    feats.write_text(_FEATURES_PY)
    (tmp_path / "fails_on_import.py").write_text("raise ImportError('needs timm')\n")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    return [
        ("nosuchmod:fn", r"cannot import module 'nosuchmod' \(ModuleNotFoundError: No module "
                         r"named 'nosuchmod'\)$"),
        ("math:no_such_function", "math has no attribute 'no_such_function'$"),
        (f"{tmp_path}/missing.py:features", f"no such file {tmp_path}/missing.py$"),
        (f"{tmp_path}/fails_on_import.py:f", r"cannot import .*fails_on_import.py: ImportError: "
                                             "needs timm$"),
        (f"{tmp_path}/syntax.py:f", "cannot import .*syntax.py: SyntaxError"),
        (f"{feats}:nope", "has no attribute 'nope'$"),
        (f"{feats}:NUMBER", "NUMBER in .*feats.py is of type int, not an nn.Module or a "
                            "function returning one$"),
        (f"{feats}:needs_an_argument", r"calling needs_an_argument\(\) failed \(TypeError: .*"
                                       "expected a function without arguments"),
        (f"{feats}:explodes", r"calling explodes\(\) failed \(RuntimeError: no GPU here\)"),
        (f"{feats}:a_number", r"a_number\(\) returned int, not an nn.Module$"),
        (f"{feats}:scalar_features", r"maps \(2, 3, 4, 4\) images to a torch.float32 tensor of "
                                     r"shape \(\); expected \(2, d\) float features$"),
        (f"{feats}:broken_features", r"the extractor fails on a \(2, 3, 4, 4\) batch of images "
                                     r"in \[0, 1\] \(RuntimeError: "),
        ("nocolon", "expected module:function or file.py:function; the choices are inception, "),
        (f"inception:{tmp_path}/missing.pth", f"the Inception weights file {tmp_path}/missing.pth "
                                              "does not exist; expected the torch-fidelity file "
                                              "weights-inception-2015-12-05-6726825d.pth"),
        (f"inception:{weights_dir}", f"the Inception weights file {weights_dir} is a directory"),
    ]


def test_named_feature_extractor_that_cannot_be_used_is_an_error(tmp_path, monkeypatch):
    images = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    model = _tiny_model((1, 4, 4))
    for spec, expected in _bad_specs(tmp_path):
        for call in (lambda spec=spec: check_fid_features(spec, (1, 4, 4)),
                     lambda spec=spec: fid_metric.run(EvalContext(
                         model, images, options={"fid_features": spec})),
                     lambda spec=spec: evaluate(model, images, ["elbo", "fid"],
                                                {"fid_features": spec})):
            with pytest.raises(FeatureExtractorError) as info:
                call()
            message = str(info.value)
            assert isinstance(info.value, ValueError) and "\n" not in message, message
            prefix = f"--fid-features {spec!r}: "
            assert message.startswith(prefix), message
            assert re.search(expected, message[len(prefix):]), message
    # By contrast, where nothing the user named failed (the default Inception features, or an
    # existing weights file, without torch-fidelity), FID is n/a with the reason, the report
    # goes on.
    monkeypatch.setattr(fid_metric, "torch_fidelity_installed", lambda: False)
    weights = tmp_path / fid_metric.INCEPTION_WEIGHTS_FILE
    weights.write_bytes(b"weights")
    for spec in (None, "inception", f"inception:{weights}"):
        check_fid_features(spec, (1, 4, 4))
        fid = evaluate(model, images, ["fid"], {"fid_features": spec})["metrics"]["fid"]
        assert fid["available"] is False and "pip install torch-fidelity" in fid["reason"]


def _tiny_model(shape):
    from sigmavae import likelihoods
    from sigmavae.models.conv import build_conv_vae

    torch.manual_seed(0)
    return build_conv_vae(shape, likelihoods.create("fixed_sigma", sigma=0.1), latent_dim=2,
                          channels=(4, 4, 4)).eval()


def test_prior_samples_and_fid_of_a_float64_model(frey_model, frey_test_images):
    double = copy.deepcopy(frey_model).double()
    samples = fid_metric.prior_samples(double, 5, seed=1, batch_size=2)
    torch.testing.assert_close(samples.double(),
                               fid_metric.prior_samples(frey_model, 5, seed=1).double(),
                               rtol=0, atol=1e-5)  # the same weights: float32 rounding only
    out = fid_metric.run(EvalContext(double, frey_test_images, batch_size=10,
                                     options={"fid_samples": 16, "fid_features": "pixels"}))
    assert out["available"] and out["fid"] > 0
