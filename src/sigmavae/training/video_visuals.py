"""Pictures of a conditional sequence model's predictions: a PNG strip and an animated GIF.

For each of ``n`` test sequences the strip has one row of the true frames, then one row per
sample: the given context frames followed by the sampled predictions, so a column is one time
step. The GIF plays the same sequences side by side (truth, then each sample), one GIF frame per
time step, with a red border on the predicted steps and a grey one on the given ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid, save_image

from .. import objective

#: Each frame is drawn at least this many pixels wide (nearest-neighbour upscaling).
MIN_FRAME_PIXELS = 64


@torch.no_grad()
def predicted_sequences(model: nn.Module, sequences: torch.Tensor, samples: int,
                        seed: int = 0) -> torch.Tensor:
    """``samples`` continuations of each sequence: floats in [0, 1] of shape
    ``(N, samples, T_model, C, H, W)``, the given context frames followed by the sampled ones.

    ``sequences`` are uint8 ``(N, T, C, H, W)`` with ``T >= context_frames`` (only the context
    frames are used); ``model`` must be conditional (``context_frames > 0``).
    """
    spec = cast(objective.Model, model)
    given = objective.context_frames(spec)
    if not given:
        raise ValueError(f"{type(model).__name__} is not a conditional sequence model "
                         "(no context_frames): use a sample grid")
    n = sequences.shape[0]
    g = torch.Generator(device=objective.model_device(spec)).manual_seed(seed)
    context = sequences[:, :given].float() / 255.0
    with objective.eval_mode(model):
        draws = [objective.sample(spec, n, generator=g, context=sequences).float().cpu()
                 for _ in range(samples)]
    out = [torch.cat([context, draw], dim=1) for draw in draws]
    return torch.stack(out, dim=1)


def _upscale(frames: torch.Tensor) -> torch.Tensor:
    """``(..., C, H, W)`` enlarged by an integer factor so frames are >= 64 px wide."""
    factor = max(1, -(-MIN_FRAME_PIXELS // frames.shape[-1]))
    if factor == 1:
        return frames
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:])
    big = torch.nn.functional.interpolate(flat, scale_factor=factor, mode="nearest")
    return big.reshape(*lead, *big.shape[-3:])


def save_prediction_strip(truth: torch.Tensor, predictions: torch.Tensor, path: Path) -> Path:
    """PNG: per sequence a row of ``truth`` (uint8 ``(N, T, C, H, W)``), then a row per sample of
    ``predictions`` (``(N, S, T', C, H, W)`` in [0, 1]); rows are padded to the longer length."""
    steps = max(truth.shape[1], predictions.shape[2])
    rows = []
    for i in range(truth.shape[0]):
        rows.append(_pad(truth[i].float() / 255.0, steps))
        rows += [_pad(p, steps) for p in predictions[i]]
    frames = _upscale(torch.cat(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(frames, path, nrow=steps, padding=2, pad_value=1.0)
    return path


def save_prediction_gif(truth: torch.Tensor, predictions: torch.Tensor, path: Path,
                        context_frames: int, ms_per_frame: int = 250) -> Path:
    """Animated GIF: at each time step a grid with one row per sequence (truth, then each
    sample); predicted steps (from ``context_frames`` on) have a red border, given ones grey."""
    steps = min(truth.shape[1], predictions.shape[2])
    per_row = 1 + predictions.shape[1]
    images = []
    for t in range(steps):
        tiles = []
        for i in range(truth.shape[0]):
            tiles.append(truth[i, t].float() / 255.0)
            tiles += list(predictions[i, :, t])
        colour = (1.0, 0.0, 0.0) if t >= context_frames else (0.6, 0.6, 0.6)
        framed = [_framed(tile.expand(3, -1, -1), colour) for tile in _upscale(torch.stack(tiles))]
        grid = make_grid(torch.stack(framed), nrow=per_row, padding=2, pad_value=1.0)
        array = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        images.append(Image.fromarray(array))
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    return path


def _framed(tile: torch.Tensor, colour: tuple[float, float, float],
            width: int = 3) -> torch.Tensor:
    """An RGB ``tile`` ``(3, H, W)`` inside a border of ``colour``, ``(3, H + 2w, W + 2w)``."""
    canvas = torch.tensor(colour).view(3, 1, 1).expand(3, tile.shape[1] + 2 * width,
                                                       tile.shape[2] + 2 * width).clone()
    canvas[:, width:-width, width:-width] = tile
    return canvas


def _pad(frames: torch.Tensor, steps: int) -> torch.Tensor:
    """``(T, C, H, W)`` padded with white frames to ``steps``."""
    if frames.shape[0] >= steps:
        return frames[:steps]
    blank = torch.ones(steps - frames.shape[0], *frames.shape[1:])
    return torch.cat([frames, blank])
