"""Fréchet video distance (FVD; Unterthiner et al., 2018) of predicted videos to the test videos.

Every test sequence's first ``c`` frames condition one future of ``F`` frames sampled from the
model's learned prior (decoder means). The predicted video is the ``c`` ground-truth context
frames followed by the ``F`` predicted ones (the convention of the published BAIR FVDs, whose
scored videos include the conditioning frames); the real video is the sequence's first
``c + F`` frames. A feature network maps each video to a vector, and FVD is the Fréchet distance
of the two feature sets: FID's implementation (:mod:`sigmavae.metrics.frechet`, torchmetrics).

Feature networks (``fvd_features``; ``--fvd-features``):

* ``i3d:PATH``: the standard FVD network, I3D trained on Kinetics-400, as the TorchScript file
  ``i3d_torchscript.pt`` used by StyleGAN-V (Skorokhodov et al., 2022) and common PyTorch FVD
  code (it reproduces the TF-Hub I3D of the reference implementation). It is called as
  ``net(videos, rescale=False, resize=True, return_features=True)`` with ``videos`` float32
  ``(N, 3, T, H, W)`` in [-1, 1] (the 8-bit frames ``x`` as ``2 x / 255 - 1``; grey frames
  repeated to 3 channels); it resizes every frame to 224 x 224 and returns the 400-d logits
  before the softmax. Loading TorchScript runs the code stored in the file, so use a file from
  a trusted source only (the one StyleGAN-V publishes).
* an ``nn.Module`` (in code: ``evaluate(..., options={"fvd_features": module})`` or
  :func:`frechet_video_distance`): maps float videos ``(N, T, C, H, W)`` in [0, 1] to
  ``(N, d)`` features.

Without a feature network FVD is reported as not available, with that instruction; a named file
that is missing or is not such a network raises :class:`~sigmavae.metrics.fid.FeatureExtractorError`
(one line). FVD is comparable only for the same network, number of videos, frames per video and
resolution, and is biased upwards for few videos (published BAIR numbers use 256 test videos of
16 frames, several samples each).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..messages import first_line
from ..objective import Model, compute_dtype, model_device
from ..streams import generator as stream_generator
from ._common import EvalContext, MetricUnavailable, eval_mode, fmt
from .fid import FeatureExtractorError
from .frechet import frechet_metric
from .registry import MetricOption, register_metric
from .video import (
    latent_per_frame,
    prediction_frames,
    require_conditional,
    sample_futures,
    to_unit,
)

I3D_FILE = "i3d_torchscript.pt"
I3D_ORIGIN = ("the TorchScript I3D of StyleGAN-V (universome/stylegan-v, i3d_torchscript.pt), "
              "Kinetics-400 I3D as in the reference FVD")
#: What ``--fvd-features`` accepts (for error messages).
FEATURES_EXPECTED = (f"i3d:PATH (the TorchScript file {I3D_FILE}), or in code an nn.Module "
                     "mapping videos (N, T, C, H, W) in [0, 1] to (N, d) features")
#: Videos per batch through the feature network (I3D sees 224 x 224 frames).
FEATURE_BATCH = 16


class I3DFeatures(nn.Module):
    """The TorchScript I3D as a feature map: videos ``(N, T, C, H, W)`` floats in [0, 1]
    (``C`` 1 or 3) -> ``(N, 400)`` logits (see the module docstring for the call)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.dim() != 5 or videos.shape[2] not in (1, 3):
            raise ValueError(f"I3D features need videos (N, T, 1 or 3, H, W), got "
                             f"{tuple(videos.shape)}")
        x = videos.permute(0, 2, 1, 3, 4).float()  # (N, C, T, H, W)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1, -1)
        x = torch.round(x.clamp(0, 1) * 255) / 127.5 - 1  # the 8-bit frames, in [-1, 1]
        return self.net(x, rescale=False, resize=True, return_features=True)


def _error(spec: str, what: str) -> FeatureExtractorError:
    return FeatureExtractorError(f"--fvd-features {spec!r}: {what}")


def load_i3d(path: str | Path) -> I3DFeatures:
    """The I3D feature network from its TorchScript file (loaded on the CPU).

    Loading TorchScript executes the code the file contains: pass only a file from a trusted
    source (:data:`I3D_ORIGIN`).

    Raises:
        FeatureExtractorError: the file is missing or is not a TorchScript module.
    """
    spec = f"i3d:{path}"
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise _error(spec, f"the I3D file {path} {what}; expected {I3D_ORIGIN}")
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # not TorchScript, truncated, ...: say so in one line
        raise _error(spec, f"could not load {path} as TorchScript ({first_line(err)}); "
                           f"expected {I3D_ORIGIN}") from err
    return I3DFeatures(net.eval())


def resolve_fvd_features(spec: Any) -> tuple[nn.Module, str] | None:
    """The feature network of ``spec`` (``i3d:PATH``, an ``nn.Module``, or ``None``: no FVD)
    and its description.

    Raises:
        FeatureExtractorError: any other value, or an unusable file.
    """
    if spec is None:
        return None
    if isinstance(spec, nn.Module):
        return spec, f"custom extractor {type(spec).__name__} (not I3D)"
    if isinstance(spec, str) and spec.startswith("i3d:") and spec != "i3d:":
        path = spec.partition(":")[2]
        return load_i3d(path), f"I3D (TorchScript {Path(path).name}, 400-d logits)"
    raise _error(str(spec), f"expected {FEATURES_EXPECTED}")


def feature_size(extractor: nn.Module, video_shape: tuple[int, ...], spec: str,
                 device: torch.device | str | None = None) -> int:
    """Run ``extractor`` on two grey videos of ``video_shape`` ``(T, C, H, W)``: it must give
    ``(2, d)`` float features; returns ``d``.

    Raises:
        FeatureExtractorError: it fails on them or gives something else.
    """
    probe = torch.full((2, *video_shape), 0.5, device=device)
    try:
        with torch.no_grad(), eval_mode(extractor):
            out = extractor(probe)
    except Exception as err:
        raise _error(spec, f"the feature network fails on a (2, {', '.join(map(str, video_shape))}"
                           f") batch of videos in [0, 1] ({first_line(err, with_type=True)})") \
            from err
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2 \
            or not out.is_floating_point():
        got = (f"a {out.dtype} tensor of shape {tuple(out.shape)}"
               if isinstance(out, torch.Tensor) else type(out).__name__)
        raise _error(spec, f"the feature network maps 2 videos to {got}; expected (2, d) float "
                           "features")
    return int(out.shape[1])


def check_fvd_features(spec: Any, video_shape: tuple[int, ...]) -> None:
    """Fail early on an ``fvd_features`` value that cannot work (before any metric runs): load
    it and run it once on videos of ``video_shape`` ``(T, C, H, W)``. ``None`` passes (FVD is
    then reported as not available).

    Raises:
        FeatureExtractorError: one line naming the value and what is expected.
    """
    resolved = resolve_fvd_features(spec)
    if resolved is not None:
        feature_size(resolved[0], tuple(video_shape), str(spec))


@torch.no_grad()
def frechet_video_distance(real: torch.Tensor, fake: torch.Tensor, extractor: nn.Module,
                           batch_size: int = FEATURE_BATCH,
                           device: torch.device | str | None = None,
                           label: str | None = None) -> float:
    """FVD between two sets of videos ``(N, T, C, H, W)`` and ``(M, T, C, H, W)`` (uint8 or
    floats in [0, 1]; ``N, M >= 2``) in the features of ``extractor`` (an ``nn.Module`` such as
    :class:`I3DFeatures`), fed ``batch_size`` videos at a time on ``device`` (default the
    extractor's). Squared feature units.

    Raises:
        FeatureExtractorError: ``extractor`` does not map the videos to ``(N, d)`` features (the
            message names it as ``label``, default its class name).
    """
    if real.dim() != 5 or fake.dim() != 5 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"frechet_video_distance: videos must be (N, T, C, H, W) of one frame "
                         f"shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"frechet_video_distance: at least 2 videos per set, got "
                         f"{real.shape[0]} and {fake.shape[0]}")
    param = next(extractor.parameters(), None)
    if device is None:
        device = param.device if param is not None else torch.device("cpu")
    extractor = extractor.to(device).eval()
    size = feature_size(extractor, tuple(real.shape[1:]), label or type(extractor).__name__,
                        device)
    metric = frechet_metric(extractor, size).to(device)
    for videos, is_real in ((real, True), (fake, False)):
        for start in range(0, videos.shape[0], batch_size):
            metric.update(to_unit(videos[start:start + batch_size].to(device)), real=is_real)
    return float(metric.compute())


@torch.no_grad()
def predicted_videos(model: Model, sequences: torch.Tensor,
                     generator: torch.Generator | None = None, context_frames: int | None = None,
                     future_frames: int | None = None, batch_size: int = 256,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """One predicted video per test sequence (uint8 ``(S, T, C, H, W)`` or floats in [0, 1]):
    its ``c`` context frames followed by ``F`` frames sampled from the model's learned prior
    (noise drawn in sequence order from ``generator``; ``c``, ``F`` as in
    :func:`~sigmavae.metrics.video.best_of_n`). Floats in [0, 1], ``(S, c + F, C, H, W)``, CPU.
    """
    given, steps = prediction_frames(model, sequences.shape[1], context_frames, future_frames)
    device = torch.device(device) if device is not None else model_device(model)
    dtype = compute_dtype(model)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(sequences.shape[0], latent_per_frame(model) * steps, generator=generator,
                        device=gen_device)
    out = []
    with eval_mode(model):
        for start in range(0, sequences.shape[0], batch_size):
            context = to_unit(sequences[start:start + batch_size, :given].to(device), dtype)
            future = sample_futures(model, context, noise[start:start + batch_size].to(device,
                                                                                     dtype))
            out.append(torch.cat([context.float(), future.float()], 1).cpu())
    return torch.cat(out)


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    return [("FVD", fmt(result["fvd"], 2),
             f"{result['features']}; {result['num_videos']} videos of "
             f"{result['frames_per_video']} frames ({result['context_frames']} context + "
             f"{result['future_frames']} predicted, one prior sample per test sequence) vs the "
             "test videos; biased upwards for few videos")]


@register_metric("fvd", "Frechet video distance of predicted videos (context + one future from "
                 "the learned prior) to the test videos (I3D or custom features)", title="FVD",
                 rows=markdown_rows, options=[
                     MetricOption("fvd_features", str | None, None, "fvd: the I3D network as "
                                  "TorchScript (i3d_torchscript.pt; loading runs the file's code: "
                                  "use a trusted copy)", metavar="i3d:PATH"),
                     MetricOption("fvd_samples", int | None, None, "fvd: test videos and as many "
                                  "predicted ones (default: all)", ge=2),
                 ])
def run(ctx: EvalContext) -> dict:
    """Options: ``fvd_features`` (``i3d:PATH`` or an ``nn.Module``; required), ``fvd_samples``
    (videos, default all test sequences), ``video_context_frames``, ``video_future_frames``
    (as for the ``video`` metric)."""
    model = ctx.model
    require_conditional(model)
    spec = ctx.option("fvd_features")
    resolved = resolve_fvd_features(spec)
    if resolved is None:
        raise MetricUnavailable(f"FVD needs a video feature network: pass --fvd-features "
                                f"i3d:PATH with {I3D_ORIGIN}, or fvd_features=<nn.Module> in code")
    extractor, desc = resolved
    n = min(int(ctx.option("fvd_samples", ctx.images.shape[0])), ctx.images.shape[0])
    if n < 2:
        raise ValueError(f"FVD needs at least 2 test sequences, got {n}")
    sequences = ctx.images[:n]
    fake = predicted_videos(model, sequences, stream_generator(ctx.seed, "fvd_prior"),
                            ctx.option("video_context_frames"), ctx.option("video_future_frames"),
                            ctx.batch_size, ctx.device)
    given, steps = prediction_frames(model, sequences.shape[1], ctx.option("video_context_frames"),
                                     ctx.option("video_future_frames"))
    real = to_unit(sequences[:, :given + steps])
    value = frechet_video_distance(real, fake, extractor, min(ctx.batch_size, FEATURE_BATCH),
                                   ctx.device, label=str(spec))
    return {"available": True, "fvd": value, "features": desc, "num_videos": n,
            "frames_per_video": given + steps, "context_frames": given, "future_frames": steps,
            "units": "squared feature distance; comparable only for the same network, number "
                     "of videos, frames and resolution",
            "videos": "test sequences' context frames + one future sampled from the learned "
                      "prior (decoder means) vs the test sequences' own frames"}
