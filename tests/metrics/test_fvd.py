"""The Fréchet distance (shared by FID and FVD) against closed forms, and FVD with a tiny video
feature network and a TorchScript stand-in for I3D."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from sigmavae import likelihoods
from sigmavae.metrics import evaluate, render_markdown
from sigmavae.metrics.fid import FeatureExtractorError
from sigmavae.metrics.frechet import frechet_distance
from sigmavae.metrics.fvd import (
    check_fvd_features,
    frechet_video_distance,
    load_i3d,
    predicted_videos,
    resolve_fvd_features,
)
from sigmavae.objective import ModelOutput


def _with_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """``n`` points whose sample mean is ``mean`` and unbiased sample covariance ``cov``
    exactly (random points, whitened empirically, then coloured)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, mean.numel(), generator=g, dtype=torch.float64)
    x = x - x.mean(0)
    white = x @ torch.linalg.inv(torch.linalg.cholesky(x.T @ x / (n - 1))).T
    return white @ torch.linalg.cholesky(cov).T + mean


def _reference(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`` with scipy's matrix square root."""
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_frechet_distance_of_two_known_gaussians() -> None:
    g = torch.Generator().manual_seed(0)
    d = 5
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    b = torch.randn(d, d, generator=g, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.5 * torch.eye(d), b @ b.T + 0.1 * torch.eye(d)
    mu1 = torch.randn(d, generator=g, dtype=torch.float64)
    mu2 = mu1 + torch.linspace(-1, 1, d, dtype=torch.float64)
    real, fake = _with_moments(300, mu1, s1, seed=1), _with_moments(200, mu2, s2, seed=2)
    expected = _reference(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
    assert abs(frechet_distance(real, fake) - expected) < 1e-6 * max(1.0, expected)
    # diagonal covariances commute: d^2 = ||mu1 - mu2||^2 + sum (sqrt(v1) - sqrt(v2))^2
    v1 = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)
    v2 = torch.tensor([9.0, 1.0, 0.25], dtype=torch.float64)
    m1, m2 = torch.zeros(3, dtype=torch.float64), torch.tensor([3.0, 0, 0], dtype=torch.float64)
    by_hand = 9.0 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0.0  # 14
    value = frechet_distance(_with_moments(50, m1, torch.diag(v1), 3),
                             _with_moments(80, m2, torch.diag(v2), 4))
    assert abs(value - by_hand) < 1e-8


def test_frechet_distance_of_identical_sets_is_zero() -> None:
    features = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(features, features)) < 1e-6
    with pytest.raises(ValueError, match=r"\(N, d\) and \(M, d\)"):
        frechet_distance(features, features[:, :3])
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(features[:1], features)


class TinyVideoNet(nn.Module):
    """A random conv3d feature map: videos (N, T, C, H, W) in [0, 1] -> (N, 6)."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, 6, kernel_size=3)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            nn.init.normal_(self.conv.weight, std=0.3, generator=g)
            nn.init.normal_(self.conv.bias, std=0.1, generator=g)
        self.pool = nn.AdaptiveAvgPool3d(1)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        x = videos.permute(0, 2, 1, 3, 4)  # (N, C, T, H, W)
        return self.pool(torch.relu(self.conv(x))).flatten(1)


def _moving_squares(n: int, seed: int, brightness: float = 1.0, jitter: float = 0.0
                    ) -> torch.Tensor:
    """``n`` videos (4 frames, 1 x 16 x 16) of a square moving right, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    videos = torch.zeros(n, 4, 1, 16, 16)
    start = torch.randint(0, 8, (n, 2), generator=g)
    for i in range(n):
        for t in range(4):
            r, c = int(start[i, 0]), int(start[i, 1]) + t
            videos[i, t, 0, r:r + 5, c:c + 5] = brightness
    noise = jitter * torch.randn(videos.shape, generator=g)
    return (videos + noise).clamp(0, 1)


def test_fvd_ranks_the_closer_video_set_lower() -> None:
    net = TinyVideoNet()
    real = _moving_squares(48, seed=0)
    same_kind = _moving_squares(48, seed=1)
    further = _moving_squares(48, seed=2, brightness=0.6, jitter=0.15)
    close = frechet_video_distance(real, same_kind, net, batch_size=16)
    far = frechet_video_distance(real, further, net, batch_size=16)
    assert 0 <= close < far
    assert abs(frechet_video_distance(real, real, net)) < 1e-4
    # it is the Fréchet distance of the network's features
    with torch.no_grad():
        expected = frechet_distance(net(real), net(further))
    assert abs(far - expected) < 1e-4 * max(1.0, expected)
    # uint8 videos are read as intensities / 255
    as_uint8 = (real * 255).round().to(torch.uint8)
    assert abs(frechet_video_distance(as_uint8, real, net)) < 1e-4
    with pytest.raises(FeatureExtractorError, match=r"expected \(2, d\) float features"):
        frechet_video_distance(real, further, nn.Flatten(0), label="flat")


class I3DStandIn(nn.Module):
    """Stands in for the TorchScript I3D: reports what it was called with, per video:
    min, max, channels, frames, height, and the three flags."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        n = x.shape[0]
        flat = x.reshape(n, -1)
        info = torch.tensor([float(x.shape[1]), float(x.shape[2]), float(x.shape[3]),
                             float(rescale), float(resize), float(return_features)])
        return torch.cat([flat.amin(1, keepdim=True), flat.amax(1, keepdim=True),
                          info.expand(n, -1)], 1)


def test_i3d_file_is_called_with_the_stylegan_v_convention(tmp_path) -> None:
    path = tmp_path / "i3d_torchscript.pt"
    with warnings.catch_warnings():  # torch deprecates TorchScript; the I3D file is one
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(I3DStandIn()), str(path))
    net, desc = resolve_fvd_features(f"i3d:{path}")  # type: ignore[misc]
    assert "I3D" in desc and "i3d_torchscript.pt" in desc
    videos = torch.zeros(2, 5, 1, 16, 16)  # grey (N, T, C, H, W) in [0, 1]
    videos[:, :, :, :8] = 1.0
    out = net(videos)
    # (N, 3, T, H, W) in [-1, 1]; rescale=False (done here), resize=True, return_features=True
    assert out[:, :2].tolist() == [[-1.0, 1.0]] * 2
    assert out[0, 2:].tolist() == [3.0, 5.0, 16.0, 0.0, 1.0, 1.0]
    check_fvd_features(f"i3d:{path}", (5, 1, 16, 16))  # loads and runs: no error


def test_bad_fvd_features_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(FeatureExtractorError, match="does not exist; expected the TorchScript"):
        load_i3d(tmp_path / "missing.pt")
    with pytest.raises(FeatureExtractorError, match="is a directory"):
        resolve_fvd_features(f"i3d:{tmp_path}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a TorchScript archive")
    with pytest.raises(FeatureExtractorError, match=r"could not load .* as TorchScript"):
        load_i3d(junk)
    with pytest.raises(FeatureExtractorError, match="expected i3d:PATH"):
        resolve_fvd_features("inception")
    assert resolve_fvd_features(None) is None
    with pytest.raises(FeatureExtractorError) as info:
        load_i3d(junk)
    assert "\n" not in str(info.value)


class Continuer(nn.Module):
    """A conditional sequence model: each future frame is the last context frame plus noise
    ``0.05 * noise_t`` (one noise value per frame), through a sigmoid mean head."""

    def __init__(self, frames: int = 6, context: int = 2) -> None:
        super().__init__()
        self.head = likelihoods.create("optimal_sigma")
        self.data_shape = (frames, 1, 16, 16)
        self.context_frames = context
        self.latent_dim = frames - context  # z_dim = 1
        self.unused = nn.Parameter(torch.zeros(()))

    def generate(self, noise: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        last = context[:, -1:]  # (B, 1, C, H, W)
        frames = last + 0.05 * noise[:, :, None, None, None]
        return torch.logit(frames.clamp(0.01, 0.99))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        params = torch.logit(x[:, self.context_frames:].clamp(0.01, 0.99))
        return ModelOutput(params, torch.zeros(x.shape[0], device=x.device))


def test_fvd_metric_through_evaluate() -> None:
    model = Continuer()
    seqs = (_moving_squares(6, seed=3) * 191 + 32).round().to(torch.uint8)  # 4 frames
    seqs = torch.cat([seqs, seqs[:, -2:]], 1)  # 6 frames, like the model
    videos = predicted_videos(model, seqs, torch.Generator().manual_seed(0))
    assert videos.shape == (6, 6, 1, 16, 16)
    torch.testing.assert_close(videos[:, :2], seqs[:, :2] / 255.0)  # the context, then futures
    assert not torch.equal(videos[:, 2:], seqs[:, 2:] / 255.0)
    report = evaluate(model, seqs, ["fvd"], options={"fvd_features": TinyVideoNet()},
                      batch_size=4)
    result = report["metrics"]["fvd"]
    assert result["available"] and result["fvd"] >= 0
    assert result["frames_per_video"] == 6 and result["context_frames"] == 2
    assert result["num_videos"] == 6 and "TinyVideoNet" in result["features"]
    assert "FVD" in render_markdown(report)
    missing = evaluate(model, seqs, ["fvd"])["metrics"]["fvd"]
    assert not missing["available"] and "i3d:PATH" in missing["reason"]
