"""FID through torchmetrics with custom feature extractors; missing Inception weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from sigmavae.metrics import EvalContext, MetricUnavailable, build_fid_metric, fid_from_images
from sigmavae.metrics import fid as fid_metric


class Flatten64(nn.Module):
    """An identity feature map in float64: (N, 3, H, W) -> (N, 3 H W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).double()


class Pool8(nn.Module):
    """A small extractor: 2x2 average pools of two channels, 8 features."""

    num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x[:, :2], (2, 2)).flatten(1)


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
    with pytest.raises(MetricUnavailable, match="cannot import"):
        fid_metric.run(EvalContext(frey_model, frey_test_images,
                                   options={"fid_features": "no_such_module_xyz:f"}))
    samples = fid_metric.prior_samples(frey_model, 5, seed=1, batch_size=2)
    assert samples.shape == (5, 1, 28, 20)
    assert 0 <= float(samples.min()) <= float(samples.max()) <= 1
