"""Batched, deterministic resizing and cropping of uint8 image tensors.

Everything here works on whole ``uint8`` tensors of shape ``(N, C, H, W)`` (values 0..255) and
returns ``uint8`` tensors, processing ``chunk`` images at a time to bound the float32 workspace.
Resizing is bilinear with antialiasing (``torch.nn.functional.interpolate(..., antialias=True)``)
followed by rounding to the nearest integer, so results are reproducible bit-for-bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import DataOptionError


def check_image_size(image_size: object, *, argument: str = "image_size") -> int | None:
    """Validate an ``image_size`` argument: ``None`` or a positive int (pixels)."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise DataOptionError(
            f"{argument} must be a positive integer (output side in pixels) or None, "
            f"got {image_size!r} of type {type(image_size).__name__}"
        )
    if image_size < 1:
        raise DataOptionError(f"{argument} must be a positive integer, got {image_size}")
    return image_size


def center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre crop ``(N, C, H, W)`` images to ``size = (h, w)`` pixels (a view, no copy).

    The offset is ``round((H - h) / 2)`` like ``torchvision.transforms.CenterCrop``.

    Raises:
        DataOptionError: if the crop is larger than the images.
    """
    h, w = size
    height, width = images.shape[-2:]
    if h > height or w > width or h < 1 or w < 1:
        raise DataOptionError(
            f"cannot centre-crop {height}x{width} images to {h}x{w} (crop must fit inside)"
        )
    top = round((height - h) / 2.0)
    left = round((width - w) / 2.0)
    return images[..., top : top + h, left : left + w]


def center_crop_square(images: torch.Tensor) -> torch.Tensor:
    """Centre crop to the largest square, side ``min(H, W)``."""
    side = min(images.shape[-2:])
    return center_crop(images, (side, side))


def resize(images: torch.Tensor, size: tuple[int, int], *, chunk: int = 2048) -> torch.Tensor:
    """Resize uint8 ``(N, C, H, W)`` images to ``size = (h, w)`` pixels; returns uint8, contiguous.

    Bilinear interpolation with antialiasing on float32 values in 0..255, then rounding and
    clamping back to 0..255. Returns the input (made contiguous) when the size already matches.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DataOptionError(
            f"resize expects a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}"
        )
    h, w = int(size[0]), int(size[1])
    if tuple(images.shape[-2:]) == (h, w):
        return images.contiguous()
    n, c = images.shape[:2]
    out = torch.empty((n, c, h, w), dtype=torch.uint8, device=images.device)
    for start in range(0, n, chunk):
        block = images[start : start + chunk].to(torch.float32)
        block = F.interpolate(
            block, size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out
