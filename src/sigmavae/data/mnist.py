"""MNIST in torchvision's layout: raw IDX files (gzipped or not) under ``<root>/MNIST/raw``."""

from __future__ import annotations

import gzip
import shutil
import tempfile
import zlib
from pathlib import Path

import torch

from .dataset import ImageDataset
from .errors import DataFormatError
from .paths import not_found, resolve_root
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


def read_idx(path: Path, *, images: bool) -> torch.Tensor:
    """Read one IDX file (``.gz`` or not) with torchvision's MNIST reader.

    Returns uint8 ``(N, 28, 28)`` for images, int64 ``(N,)`` for labels.
    """
    from torchvision.datasets.mnist import read_image_file, read_label_file

    reader = read_image_file if images else read_label_file
    try:
        if path.suffix != ".gz":
            return reader(str(path))
        with tempfile.TemporaryDirectory(prefix="sigmavae-mnist-") as tmp:
            plain = Path(tmp) / path.stem
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return reader(str(plain))
    except (
        AssertionError,
        TypeError,
        ValueError,
        EOFError,
        OSError,
        IndexError,
        KeyError,
        RuntimeError,
        zlib.error,
    ) as exc:
        what = "uint8 images (magic 2051, 3 dims)" if images else "uint8 labels (magic 2049, 1 dim)"
        raise DataFormatError(
            f"mnist: {path} is not a valid IDX file of {what}: {type(exc).__name__}: {exc}"
        ) from exc


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
