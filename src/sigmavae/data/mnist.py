"""MNIST in torchvision's layout: raw IDX files (gzipped or not) under ``<root>/MNIST/raw``."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataFormatError, EmptyDatasetError
from .paths import check_not_empty, not_found, resolve_root, short
from .registry import register_dataset
from .splits import train_val_indices
from .transforms import resize

DESCRIPTION = """
MNIST (LeCun & Cortes): handwritten digits, 28x28 grey, uint8 (N, 1, 28, 28), labels 0-9.
Official splits 60,000 train / 10,000 test; val is carved from the official train split
(val_fraction, seed), so train+val = the 60,000. root must contain torchvision's layout,
<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, extracted or .gz; only the files
of the requested split are needed. Get them with download=True on a machine with internet
(torchvision), or copy the four published .gz files there. image_size resizes (antialiased
bilinear).
"""

_HOW = (
    "pass download=True on a machine with internet, or put the torchvision MNIST raw files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz; .gz or extracted) in <root>/MNIST/raw"
)


def raw_folder(root: Path) -> Path:
    """``<root>/MNIST/raw``, where torchvision keeps the IDX files."""
    return root / "MNIST" / "raw"


def _find(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


#: IDX magic numbers: unsigned bytes (type code 0x08) with 3 dims (images) or 1 dim (labels).
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
MNIST_HW = (28, 28)


def _idx_bytes(path: Path, what: str) -> bytes:
    """The (decompressed) bytes of one IDX file; :class:`DataFormatError` if unreadable."""
    check_not_empty(path, "mnist", f"an IDX file of {what}")
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        kind = "not a readable gzip file" if path.suffix == ".gz" else "unreadable"
        raise DataFormatError(
            f"mnist: {path} is not a valid IDX file of {what}: {kind} (truncated or corrupt?): "
            f"{type(exc).__name__}: {short(exc)}"
        ) from exc
    if not data:
        raise DataFormatError(
            f"mnist: {path} is not a valid IDX file of {what}: it decompresses to 0 bytes"
        )
    return data


def read_idx(path: Path, *, images: bool) -> torch.Tensor:
    """Read one unsigned-byte IDX file (``.gz`` or not), checking its header and length.

    Layout (big-endian): 4 magic bytes ``0, 0, 0x08, ndim`` (2051 for images, 2049 for labels),
    ``ndim`` int32 sizes, then the bytes. Returns uint8 ``(N, 28, 28)`` for images, int64
    ``(N,)`` labels in 0..9 for labels.

    Raises:
        DataFormatError: the file is empty, not gzip (for ``.gz``), has another magic number or
            shape, is truncated or too long, or holds labels outside 0..9.
        EmptyDatasetError: the header is valid but holds 0 examples.
    """
    magic, ndim = (IDX_IMAGES_MAGIC, 3) if images else (IDX_LABELS_MAGIC, 1)
    what = (
        f"uint8 images (magic {magic}, 3 dims N x 28 x 28)"
        if images
        else f"uint8 labels (magic {magic}, 1 dim N)"
    )
    data = _idx_bytes(path, what)

    def bad(reason: str) -> DataFormatError:
        return DataFormatError(f"mnist: {path} is not a valid IDX file of {what}: {reason}")

    if len(data) < 4:
        raise bad(f"only {len(data)} bytes, shorter than the 4-byte magic number")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        other = {IDX_IMAGES_MAGIC: "an images file", IDX_LABELS_MAGIC: "a labels file"}
        hint = (
            f"that is {other[found]}"
            if found in other
            else f"type code 0x{(found >> 8) & 0xFF:02x}, {found & 0xFF} dims"
        )
        raise bad(f"magic number {found} ({hint})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad(f"the header is truncated ({len(data)} of {header} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    body = len(data) - header
    dims = " x ".join(map(str, shape))
    if body < expected:
        raise bad(f"truncated: the header says {dims} ({expected} bytes) but {body} bytes follow")
    if body > expected:
        raise bad(f"{body - expected} unexpected bytes after the {dims} values the header gives")
    if images and shape[1:] != MNIST_HW:
        raise bad(f"the images are {shape[1]} x {shape[2]} pixels; MNIST images are 28 x 28")
    if shape[0] == 0:
        raise EmptyDatasetError(f"mnist: {path} holds no {'images' if images else 'labels'}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    if images:
        return torch.from_numpy(array.copy())
    if int(array.max()) > 9:
        raise bad(f"labels must be digits 0..9, found {int(array.max())}")
    return torch.from_numpy(array.astype(np.int64))


@register_dataset("mnist", DESCRIPTION)
def load_mnist(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
) -> ImageDataset:
    """MNIST ``split`` as uint8 ``(N, 1, 28, 28)`` (or ``image_size`` square) with int64 labels."""
    root = resolve_root(root)
    raw = raw_folder(root)
    prefix = "t10k" if split == "test" else "train"
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    found = [_find(raw, s) for s in stems]
    if None in found and download:
        from torchvision.datasets import MNIST

        MNIST(str(root), train=prefix == "train", download=True)
        found = [_find(raw, s) for s in stems]
    if None in found:
        missing = [raw / f"{s}[.gz]" for s, f in zip(stems, found, strict=True) if f is None]
        raise not_found("mnist", missing, raw, _HOW)
    image_path, label_path = found
    assert image_path is not None and label_path is not None  # the check above raised otherwise
    images = read_idx(image_path, images=True)
    labels = read_idx(label_path, images=False)
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"mnist: {image_path} has {images.shape[0]} images but {label_path} has "
            f"{labels.shape[0]} labels"
        )
    if split != "test":
        idx = train_val_indices(images.shape[0], split, val_fraction, seed)
        images, labels = images[idx], labels[idx]
    images = images.unsqueeze(1)
    if image_size is not None:
        images = resize(images, (image_size, image_size))
    return ImageDataset(images=images.contiguous(), name="mnist", split=split, labels=labels)
