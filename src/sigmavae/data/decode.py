"""Decode many image files at once into one uint8 tensor (threaded, chunked).

This is the only place that touches Pillow. It runs once per data set (the result is usually
cached, see :mod:`sigmavae.data.cache`); training never decodes images.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import (
    CorruptImageError,
    CorruptImageWarning,
    DataFormatError,
    DataOptionError,
    EmptyDatasetError,
)
from .transforms import center_crop, center_crop_square, resize

#: Pillow modes that hold one channel; every other mode is decoded as RGB.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

#: ``crop`` values: ``None`` (no crop), ``"square"`` (centre square of side min(H, W)),
#: or an int (centre square of that side in pixels).
Crop = str | int | None


def check_decode_options(name: str, on_error: str, num_workers: int | None) -> None:
    """Raise :class:`DataOptionError` for an ``on_error`` other than ``raise``/``skip`` or a
    ``num_workers`` (decoding threads) below 1; ``name`` is the data set the message names."""
    if on_error not in ("raise", "skip"):
        raise DataOptionError(f"{name}: on_error must be 'raise' or 'skip', got {on_error!r}")
    if num_workers is not None and num_workers < 1:
        raise DataOptionError(
            f"{name}: num_workers must be a positive integer (decoding threads) or None, "
            f"got {num_workers!r}"
        )


def default_num_workers() -> int:
    """Decoding threads used when not given: ``min(8, os.cpu_count())``."""
    return max(1, min(8, os.cpu_count() or 1))


def describe_failure(path: Path, exc: BaseException) -> str:
    """One line saying why ``path`` could not be decoded (an empty file is named as such)."""
    try:
        if os.path.getsize(path) == 0:
            return "the file is empty (0 bytes)"
    except OSError:
        if os.path.islink(path):
            return f"a broken symbolic link (its target {os.readlink(path)} does not exist)"
    text = " ".join(str(exc).replace(str(path), "<file>").split())
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}"


def channels_of(path: Path) -> int:
    """1 for grey Pillow modes (L, 1, I;16, ...), else 3; reads the header only."""
    try:
        with Image.open(path) as im:
            return 1 if im.mode in _GREY_MODES else 3
    except Exception as exc:  # Pillow raises many types on malformed input
        raise CorruptImageError(path, describe_failure(path, exc)) from exc


def _read(path: Path, mode: str) -> np.ndarray | Exception:
    """One image as a ``(H, W, C)`` uint8 array in Pillow ``mode`` ("L" or "RGB"), or the error."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert(mode))  # convert() loads and copies the pixels
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        return exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def _finish(group: list[np.ndarray], crop: Crop, image_size: int | None) -> torch.Tensor:
    """Stack same-shaped ``(H, W, C)`` arrays into ``(n, C, H', W')`` uint8 after crop/resize."""
    x = torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2)
    if crop == "square":
        x = center_crop_square(x)
    elif isinstance(crop, int):
        x = center_crop(x, (crop, crop))
    if image_size is not None:
        x = resize(x.contiguous(), (image_size, image_size))
    return x.contiguous()


def decode_images(
    paths: Sequence[Path],
    *,
    channels: int | None = None,
    image_size: int | None = None,
    crop: Crop = None,
    on_error: str = "raise",
    num_workers: int | None = None,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``paths`` into one tensor.

    Args:
        paths: image files in the order wanted.
        channels: 1 (grey) or 3 (RGB); ``None`` takes it from the first image's mode.
        image_size: if given, every image is (cropped, then) resized to a square of this side.
        crop: ``None``, ``"square"`` or an int side, applied (centred) before resizing.
        on_error: ``"raise"`` a :class:`CorruptImageError` naming the first bad file, or
            ``"skip"`` it with a :class:`CorruptImageWarning` naming it.
        num_workers: decoding threads (Pillow releases the GIL while decoding).
        chunk_size: files decoded before cropping/resizing, which bounds memory.

    Returns:
        ``(images, kept)``: ``images`` uint8 ``(M, C, H, W)``; ``kept`` int64 ``(M,)`` holds the
        positions in ``paths`` of the decoded files (all of them unless some were skipped).

    Raises:
        CorruptImageError, DataFormatError (sizes differ and no ``image_size``), EmptyDatasetError.
    """
    if on_error not in ("raise", "skip"):
        raise DataOptionError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if channels not in (None, 1, 3):
        raise DataOptionError(f"channels must be 1, 3 or None, got {channels!r}")
    if not (crop is None or crop == "square" or (isinstance(crop, int) and crop > 0)):
        raise DataOptionError(f"crop must be None, 'square' or a positive int, got {crop!r}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise EmptyDatasetError("no image files to decode")
    workers = default_num_workers() if num_workers is None else int(num_workers)
    if workers < 1:
        raise DataOptionError(f"num_workers must be >= 1, got {num_workers!r}")

    mode: str | None = None if channels is None else ("L" if channels == 1 else "RGB")
    reference: tuple[int, ...] | None = None  # (C, H, W) of the first decoded image
    first: Path | None = None
    parts: list[torch.Tensor] = []
    kept: list[int] = []
    reported: set[int] = set()  # files already reported as bad while probing the mode

    def bad(i: int, exc: Exception | str) -> None:
        reason = exc if isinstance(exc, str) else describe_failure(paths[i], exc)
        if on_error == "raise":
            raise CorruptImageError(paths[i], reason)
        warnings.warn(f"skipping image {paths[i]}: {reason}", CorruptImageWarning, stacklevel=3)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), chunk_size):
            idx = range(start, min(start + chunk_size, len(paths)))
            if mode is None:  # find the channel count from the first readable image
                for i in idx:
                    try:
                        mode = "L" if channels_of(paths[i]) == 1 else "RGB"
                        break
                    except CorruptImageError as exc:
                        bad(i, exc.reason)
                        reported.add(i)
                if mode is None:
                    continue
            results = list(pool.map(lambda p, m=mode: _read(p, m), [paths[i] for i in idx]))
            groups: dict[tuple[int, ...], list[int]] = {}
            arrays: dict[int, np.ndarray] = {}
            for i, res in zip(idx, results, strict=True):
                if isinstance(res, Exception):
                    if i not in reported:
                        bad(i, res)
                    continue
                arrays[i] = res
                groups.setdefault(res.shape, []).append(i)
            if not arrays:
                continue
            blocks = []
            for members in groups.values():
                try:
                    block = _finish([arrays[i] for i in members], crop, image_size)
                except DataOptionError as exc:  # the crop does not fit these images
                    h, w = arrays[members[0]].shape[:2]
                    raise DataOptionError(
                        f"image {paths[members[0]]} is {h}x{w} pixels, too small for the "
                        f"requested crop: {exc}"
                    ) from exc
                if reference is None:
                    reference, first = tuple(block.shape[1:]), paths[members[0]]
                elif tuple(block.shape[1:]) != reference:
                    h, w = block.shape[2:]
                    raise DataFormatError(
                        f"image {paths[members[0]]} gives {h}x{w} pixels but {first} gives "
                        f"{reference[1]}x{reference[2]}; pass image_size=<side> to resize every "
                        "image to one size"
                    )
                blocks.append((members, block))
            if len(blocks) == 1:
                members, block = blocks[0]
                parts.append(block)
                kept.extend(members)
            else:
                order = sorted(arrays)
                rows = {i: b[j] for members, b in blocks for j, i in enumerate(members)}
                parts.append(torch.stack([rows[i] for i in order]))
                kept.extend(order)
    if not kept:
        raise EmptyDatasetError(
            f"none of the {len(paths)} image files could be decoded (first: {paths[0]})"
        )
    images = parts[0] if len(parts) == 1 else torch.cat(parts)
    return images.contiguous(), torch.tensor(kept, dtype=torch.int64)
