"""SVHN (cropped digits) in torchvision's layout: ``<root>/{train,test,extra}_32x32.mat``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataFormatError, EmptyDatasetError
from .paths import check_not_empty, not_found, resolve_root, short, verify_md5
from .registry import register_dataset
from .splits import train_val_indices
from .transforms import resize

#: SVHN is resized to this side by default, as in the sigma-VAE paper.
SVHN_DEFAULT_SIZE = 28

DESCRIPTION = """
SVHN cropped digits (Netzer et al. 2011): 32x32 RGB house-number digits, resized to 28x28 by
default as in the sigma-VAE paper (image_size=32 keeps them native); uint8 (N, 3, s, s), labels
0-9 (the files' label 10 means digit 0). Official splits 73,257 train / 26,032 test (+ 531,131
extra); val is carved from train_32x32 (val_fraction, seed); option extra=True appends
extra_32x32 to our train split only. root must contain torchvision's files train_32x32.mat,
test_32x32.mat (and extra_32x32.mat for extra=True), MATLAB v5 with X uint8 (32, 32, 3, N) and
y (N, 1); get them with download=True on a machine with internet, or from
http://ufldl.stanford.edu/housenumbers/. check_md5=True verifies torchvision's published sums.
"""

_HOW = (
    "pass download=True on a machine with internet, or put the torchvision SVHN files "
    "train_32x32.mat / test_32x32.mat / extra_32x32.mat (http://ufldl.stanford.edu/housenumbers/) "
    "directly in <root>"
)


def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One SVHN ``.mat``: uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)`` in 0..9.

    Raises:
        DataFormatError: the file is empty or not MATLAB v5, lacks ``X`` or ``y``, ``X`` is not
            uint8 ``(32, 32, 3, N)``, or ``y`` is not ``N`` whole numbers in 1..10.
        EmptyDatasetError: ``X`` holds no images.
    """
    from scipy.io import loadmat

    expected = "a MATLAB v5 .mat file with X uint8 (32, 32, 3, N) and y (N, 1) in 1..10"
    check_not_empty(path, "svhn", expected)
    try:
        mat = loadmat(str(path), variable_names=["X", "y"])
    except Exception as exc:  # scipy raises ValueError, MatReadError, NotImplementedError (v7.3)...
        raise DataFormatError(
            f"svhn: cannot read {path} as {expected}: {type(exc).__name__}: {short(exc)}"
        ) from exc
    for key in ("X", "y"):
        if key not in mat:
            raise DataFormatError(
                f"svhn: {path} has no variable {key!r}; expected X uint8 (32, 32, 3, N), y (N, 1)"
            )
    x, y = mat["X"], np.asarray(mat["y"])
    if (
        not isinstance(x, np.ndarray)
        or x.dtype != np.uint8
        or x.ndim != 4
        or x.shape[:3] != (32, 32, 3)
    ):
        kind = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataFormatError(f"svhn: X in {path} is {kind}; expected uint8 (32, 32, 3, N)")
    if x.shape[3] == 0:
        raise EmptyDatasetError(f"svhn: X in {path} holds no images")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataFormatError(
            f"svhn: y in {path} is {y.dtype} {y.shape}; expected numeric labels (N, 1) in 1..10"
        )
    y = y.reshape(-1)
    if y.shape[0] != x.shape[3]:
        raise DataFormatError(f"svhn: {path} has {x.shape[3]} images but {y.shape[0]} labels")
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise DataFormatError(f"svhn: labels y in {path} must be whole numbers 1..10")
    if y.min() < 1 or y.max() > 10:
        raise DataFormatError(f"svhn: labels y in {path} must be 1..10, got {y.min()}..{y.max()}")
    images = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1))))
    labels = torch.from_numpy(y.astype(np.int64) % 10)
    return images, labels


def _md5(name: str) -> str:
    from torchvision.datasets import SVHN

    return next(v[2] for v in SVHN.split_list.values() if v[1] == name)


@register_dataset("svhn", DESCRIPTION)
def load_svhn(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
    extra: bool = False,
    check_md5: bool = False,
) -> ImageDataset:
    """SVHN ``split``: uint8 ``(N, 3, 28, 28)`` by default (``image_size`` side), int64 labels."""
    root = resolve_root(root)
    parts = (
        ["test"]
        if split == "test"
        else ["train"] + (["extra"] if extra and split == "train" else [])
    )
    for part in parts:
        path = root / f"{part}_32x32.mat"
        if not path.is_file() and download:
            from torchvision.datasets import SVHN

            SVHN(str(root), split=part, download=True)
        if not path.is_file():
            raise not_found("svhn", [path], root, _HOW)
        if check_md5:
            verify_md5(path, _md5(path.name), "svhn")
    images, labels = read_svhn_mat(root / f"{parts[0]}_32x32.mat")
    if split != "test":
        idx = train_val_indices(images.shape[0], split, val_fraction, seed)
        images, labels = images[idx], labels[idx]
    if "extra" in parts:
        x_extra, y_extra = read_svhn_mat(root / "extra_32x32.mat")
        images, labels = torch.cat([images, x_extra]), torch.cat([labels, y_extra])
    side = SVHN_DEFAULT_SIZE if image_size is None else image_size
    images = resize(images, (side, side))
    return ImageDataset(images=images, name="svhn", split=split, labels=labels)
