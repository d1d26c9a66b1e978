"""FID of draws from p(x|z) (``fid_draws``): the same prior latents as ``fid``, each shown as
one draw of the decoder instead of its mean."""

from __future__ import annotations

import pytest
import torch

from sigmavae import likelihoods
from sigmavae.metrics import EvalContext, build_fid_metric, evaluate, fid_from_images
from sigmavae.metrics import fid as fid_metric
from sigmavae.metrics.registry import METRICS
from sigmavae.models.conv import build_conv_vae

SHAPE = (1, 8, 8)


def _model(head: str, **options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_conv_vae(SHAPE, likelihoods.create(head, **options), latent_dim=2,
                          channels=(4, 4, 4)).eval()


def _images(n: int = 40) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(1),
                         dtype=torch.uint8)


def test_draws_of_a_discrete_head_are_its_samples_at_the_same_latents():
    """A categorical decoder's draws are its intensities / 255 at the prior latents of the
    means (the same z), from the seeded global stream, which is left as it was."""
    model = _model("categorical")
    before = torch.get_rng_state()
    draws = fid_metric.prior_samples(model, 6, seed=4, batch_size=4, draw_seed=9)
    assert torch.equal(torch.get_rng_state(), before)
    z = torch.randn(6, model.latent_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        params = model.generate(z)
        torch.manual_seed(9)
        first = model.head(params[:4]).sample()
        second = model.head(params[4:]).sample()
    expected = torch.cat([first, second]).float() / 255
    torch.testing.assert_close(draws, expected, rtol=0, atol=1e-7)
    assert not torch.equal(draws, fid_metric.prior_samples(model, 6, seed=4, batch_size=4))
    torch.testing.assert_close(  # the same seeds, the same draws
        draws, fid_metric.prior_samples(model, 6, seed=4, batch_size=4, draw_seed=9))


def test_draws_of_a_gaussian_head_scatter_around_the_mean_by_its_sigma():
    """A fixed-sigma Gaussian's draw is its mean plus N(0, sigma^2) noise (clamped to [0, 1]:
    measured where the mean is at least 3.5 sigma from both ends)."""
    model = _model("fixed_sigma", sigma=0.1)
    means = fid_metric.prior_samples(model, 400, seed=2)
    draws = fid_metric.prior_samples(model, 400, seed=2, draw_seed=5)
    inside = (means > 0.35) & (means < 0.65)
    assert inside.sum() > 5000
    noise = (draws - means)[inside]
    assert noise.mean().abs() < 0.005
    assert noise.std().item() == pytest.approx(0.1, rel=0.03)


def test_fid_draws_is_the_distance_of_the_draws_with_its_bootstrap_error():
    model, images = _model("fixed_sigma", sigma=0.3), _images()
    options = {"fid_samples": 40, "fid_features": "pixels", "fid_bootstrap": 5}
    out = fid_metric.run_draws(EvalContext(model, images, batch_size=16, seed=3,
                                           options=options))
    metric, _ = build_fid_metric("pixels", SHAPE)
    real = fid_metric.to_rgb(images)
    fake = fid_metric.to_rgb(fid_metric.prior_samples(
        model, 40, fid_metric.stream_seed(3, "fid_prior"), 16,
        draw_seed=fid_metric.stream_seed(3, "fid_draws")))
    assert out["fid"] == pytest.approx(fid_from_images(metric, real, fake, 16), rel=1e-6)
    assert out["fid_bootstrap_stderr"] > 0 and "one draw x ~ p(x|z)" in out["samples"]
    means = fid_metric.run(EvalContext(model, images, batch_size=16, seed=3, options=options))
    assert means["fid"] != pytest.approx(out["fid"])  # the noise moves the features
    title, _, note = METRICS.get("fid_draws").rows(out)[0]
    assert title == "FID of draws from p(x|z)" and "one draw x ~ p(x|z) each" in note


def test_per_image_sigma_has_no_draw_at_a_prior_sample():
    """Per-image optimal sigma is fitted to each data image: a prior sample has none, so the
    draws' FID is not available, with the reason; the means' FID is."""
    model = _model("optimal_sigma_per_image")
    report = evaluate(model, _images(), ["fid", "fid_draws"],
                      {"fid_samples": 20, "fid_features": "pixels"})["metrics"]
    assert report["fid"]["available"]
    assert not report["fid_draws"]["available"]
    assert "no draw from p(x|z) at a prior sample" in report["fid_draws"]["reason"]
