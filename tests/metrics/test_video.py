"""PSNR / SSIM per predicted frame against scikit-image, and SVG's best-of-N protocol on a model
whose samples are the truth plus known noise levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from sigmavae import likelihoods
from sigmavae.metrics import evaluate, render_markdown
from sigmavae.metrics.video import (
    best_of_n,
    plot_video_curves,
    psnr_per_step,
    ssim_per_step,
)
from sigmavae.models import build_model
from sigmavae.objective import ModelOutput


def _skimage_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """scikit-image's SSIM of one (C, H, W) frame with the settings ssim_per_step states:
    Gaussian weights, sigma 1.5, truncate 3.5 (an 11x11 window), population covariances."""
    return structural_similarity(target, pred, gaussian_weights=True, sigma=1.5, truncate=3.5,
                                 use_sample_covariance=False, data_range=1.0, channel_axis=0)


@pytest.mark.parametrize("shape", [(2, 3, 3, 16, 16), (1, 2, 1, 64, 48)])
def test_psnr_and_ssim_per_step_agree_with_scikit_image(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(shape, generator=g, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    psnr, ssim = psnr_per_step(pred, target), ssim_per_step(pred, target)
    assert psnr.shape == ssim.shape == shape[:2]
    for b in range(shape[0]):
        for t in range(shape[1]):
            p, x = pred[b, t].numpy(), target[b, t].numpy()
            assert abs(float(psnr[b, t]) - peak_signal_noise_ratio(x, p, data_range=1.0)) < 1e-4
            assert abs(float(ssim[b, t]) - _skimage_ssim(p, x)) < 1e-4
    # float32 frames (what models give) agree to the same tolerance
    ssim32 = ssim_per_step(pred.float(), target.float()).double()
    torch.testing.assert_close(ssim32, ssim, atol=1e-4, rtol=0)
    # identical frames: SSIM 1, PSNR infinite
    assert torch.allclose(ssim_per_step(target, target), torch.ones(shape[:2], dtype=ssim.dtype))
    assert bool(torch.isinf(psnr_per_step(target, target)).all())


def test_psnr_is_the_closed_form_of_a_known_error() -> None:
    target = torch.full((1, 2, 1, 12, 12), 0.5)
    pred = target + 0.1  # MSE 0.01: 20 dB
    torch.testing.assert_close(psnr_per_step(pred, target), torch.full((1, 2), 20.0))


def test_per_step_scores_reject_bad_frames() -> None:
    frames = torch.rand(1, 2, 1, 16, 16)
    with pytest.raises(ValueError, match="one shape"):
        psnr_per_step(frames, frames[:, :1])
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        ssim_per_step(frames[0], frames[0])
    with pytest.raises(ValueError, match="smaller than the 11x11 SSIM window"):
        ssim_per_step(torch.rand(1, 1, 1, 8, 16), torch.rand(1, 1, 1, 8, 16))
    with pytest.raises(ValueError, match="floats"):
        psnr_per_step((frames * 255).to(torch.uint8), (frames * 255).to(torch.uint8))


class Oracle(nn.Module):
    """A conditional sequence model that knows the test sequences: its future after a sequence's
    context is that sequence's truth plus a +-1 checkerboard of amplitude
    ``a = 0.02 + 0.18 tanh(|noise_0|)`` (the first noise value of the sample), so the sample
    with the smallest ``|noise_0|`` is the least noisy, and its PSNR is ``-20 log10(a)`` dB."""

    def __init__(self, truth: torch.Tensor, frames: int, context: int, z_dim: int = 2) -> None:
        super().__init__()
        self.head = likelihoods.create("optimal_sigma")
        self.data_shape = (frames, *truth.shape[2:])
        self.context_frames = context
        self.z_dim = z_dim
        self.latent_dim = z_dim * (frames - context)
        self.register_buffer("truth", truth / 255.0)  # (S, T, C, H, W) in [0, 1]
        c, h, w = truth.shape[2:]
        grid = torch.arange(h).view(h, 1) + torch.arange(w).view(1, w)
        self.register_buffer("pattern", (1.0 - 2.0 * (grid % 2)).expand(c, h, w).clone())
        self.unused = nn.Parameter(torch.zeros(()))  # gives the model a device

    @staticmethod
    def amplitude(noise: torch.Tensor) -> torch.Tensor:
        return 0.02 + 0.18 * torch.tanh(noise[..., 0].abs())

    def generate(self, noise: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        steps, given = noise.shape[1] // self.z_dim, context.shape[1]
        known = self.truth[:, :given].to(context)
        which = (context[:, None] - known[None]).flatten(2).pow(2).sum(2).argmin(1)
        future = self.truth[which, given:given + steps]
        frames = future + self.amplitude(noise)[:, None, None, None, None] * self.pattern
        return torch.logit(frames)  # the head's mean is sigmoid(params)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        params = torch.logit(x[:, self.context_frames:].clamp(0.01, 0.99))
        return ModelOutput(params, torch.zeros(x.shape[0], device=x.device))


def _sequences(count: int, frames: int, seed: int = 0) -> torch.Tensor:
    """uint8 (count, frames, 1, 16, 16) in 64..191, so truth +- 0.2 stays inside (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(64, 192, (count, frames, 1, 16, 16), generator=g, dtype=torch.uint8)


def test_best_of_n_keeps_the_least_noisy_sample() -> None:
    seqs = _sequences(3, 8)
    model = Oracle(seqs, frames=6, context=2)  # trained on 6 frames, scored on 8
    n = 6
    result = best_of_n(model, seqs, n_samples=n, generator=torch.Generator().manual_seed(7),
                       batch_size=4)
    # the same draws, in sequence order: sequence s gets noise (n, z_dim * F)
    future = seqs.shape[1] - 2
    replay = torch.Generator().manual_seed(7)
    noise = torch.stack([torch.randn(n, model.z_dim * future, generator=replay) for _ in seqs])
    amplitude = Oracle.amplitude(noise)  # (S, n)
    assert result.chosen.tolist() == amplitude.argmin(1).tolist()
    assert result.time_steps == [3, 4, 5, 6, 7, 8]  # T_test - c = 6 predicted frames
    best = amplitude.min(1).values.double()
    expected_psnr = (-20 * torch.log10(best))[:, None].expand(-1, future)
    torch.testing.assert_close(result.psnr, expected_psnr, atol=1e-3, rtol=0)
    # the chosen sample is the one of highest mean SSIM, and its SSIM is scikit-image's
    assert torch.equal(result.mean_ssim.argmax(1), result.chosen)
    truth = seqs[:, 2:].double() / 255
    for s in range(3):
        a = float(best[s])
        for t in range(future):
            frame = truth[s, t].numpy()
            sample = frame + a * model.pattern.double().numpy()
            assert abs(float(result.ssim[s, t]) - _skimage_ssim(sample, frame)) < 1e-4
    psnr_mean, psnr_se = result.psnr_curve
    assert psnr_mean.shape == psnr_se.shape == (future,)
    torch.testing.assert_close(psnr_mean, expected_psnr.mean(0), atol=1e-3, rtol=0)
    torch.testing.assert_close(psnr_se, expected_psnr.std(0) / math.sqrt(3), atol=1e-3, rtol=0)
    # the draws do not depend on the batching; fewer future frames score the first ones
    again = best_of_n(model, seqs, n_samples=n, generator=torch.Generator().manual_seed(7),
                      batch_size=64)
    assert torch.equal(again.chosen, result.chosen)
    torch.testing.assert_close(again.ssim, result.ssim)
    short = best_of_n(model, seqs, n_samples=n, future_frames=2,
                      generator=torch.Generator().manual_seed(7))
    assert short.time_steps == [3, 4] and short.psnr.shape == (3, 2)
    with pytest.raises(ValueError, match=r"future_frames must be in 1\.\.6"):
        best_of_n(model, seqs, n_samples=2, future_frames=7)
    with pytest.raises(ValueError, match=r"context_frames must be in 1\.\.7"):
        best_of_n(model, seqs, n_samples=2, context_frames=0)


def test_video_metric_reports_curves_and_plot(tmp_path) -> None:
    seqs = _sequences(4, 6, seed=1)
    model = Oracle(seqs, frames=6, context=2)
    plot = tmp_path / "video.png"
    report = evaluate(model, seqs, ["video"], options={"video_samples": 5,
                                                       "video_plot_path": str(plot)},
                      batch_size=8)
    result = report["metrics"]["video"]
    assert result["available"] and result["samples_per_sequence"] == 5
    assert result["time_steps"] == [3, 4, 5, 6] and result["num_sequences"] == 4
    # every step of a sequence has the same noise amplitude: PSNR flat over steps, <= 34 dB
    assert len(result["psnr_db_per_step"]) == 4
    assert max(result["psnr_db_per_step"]) <= -20 * math.log10(0.02) + 1e-3
    assert 0 < min(result["ssim_per_step"]) <= max(result["ssim_per_step"]) < 1
    assert "11x11, sigma 1.5" in result["ssim_settings"]
    markdown = render_markdown(report)
    assert "PSNR (dB), best of 5" in markdown and "SSIM, best of 5" in markdown
    assert "sigma 1.5" in markdown
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 200


def test_video_metric_is_not_available_without_a_conditional_sequence_model() -> None:
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    conv = build_model("conv", (1, 16, 16), likelihoods.create("gaussian"), latent_dim=2)
    result = evaluate(conv, images, ["video"])["metrics"]["video"]
    assert not result["available"] and "sequence model" in result["reason"]
    seqs = _sequences(2, 6)
    unconditional = Oracle(seqs, frames=6, context=2)
    unconditional.context_frames = 0
    result = evaluate(unconditional, seqs, ["video"])["metrics"]["video"]
    assert not result["available"] and "not conditioned on past frames" in result["reason"]


def test_plot_writes_a_png_of_every_run(tmp_path) -> None:
    seqs = _sequences(2, 6)
    model = Oracle(seqs, frames=4, context=2)
    runs = {f"run {seed}": best_of_n(model, seqs, n_samples=3,
                                     generator=torch.Generator().manual_seed(seed))
            for seed in (0, 1)}
    path = plot_video_curves(runs, tmp_path / "sub" / "curves.png", title="two runs",
                             train_frames=4)
    with Image.open(path) as image:
        assert image.format == "PNG"
    with pytest.raises(ValueError, match="no curves"):
        plot_video_curves({}, tmp_path / "none.png")


def test_plot_bands_are_two_standard_errors_by_default(tmp_path, monkeypatch) -> None:
    """The bands are +- 2 SE over the sequences (the project's figures all use 2 SE)."""
    from matplotlib.axes import Axes

    seqs = _sequences(3, 6)
    model = Oracle(seqs, frames=4, context=2)
    result = best_of_n(model, seqs, n_samples=3, generator=torch.Generator().manual_seed(0))
    widths: list[np.ndarray] = []
    original = Axes.fill_between

    def spy(self, x, low, high, **kwargs):
        widths.append((np.asarray(high) - np.asarray(low)) / 2)
        return original(self, x, low, high, **kwargs)

    monkeypatch.setattr(Axes, "fill_between", spy)
    plot_video_curves({"run": result}, tmp_path / "curves.png")
    stderr = [np.asarray(result.as_dict()[f"{k}_stderr_per_step"]) for k in ("psnr_db", "ssim")]
    assert len(widths) == 2
    for width, se in zip(widths, stderr, strict=True):
        np.testing.assert_allclose(width, 2 * se, rtol=1e-12)
    plot_video_curves({"run": result}, tmp_path / "one.png", band_se=1)
    np.testing.assert_allclose(widths[-1], stderr[1], rtol=1e-12)
