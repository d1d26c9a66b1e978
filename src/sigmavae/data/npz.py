"""Images stored as uint8 arrays in a NumPy ``.npz`` file."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataFormatError, DataNotFoundError, DataOptionError, EmptyDatasetError
from .paths import check_not_empty, short
from .registry import register_dataset
from .splits import check_fraction, train_val_indices, train_val_test_indices
from .transforms import resize

#: Keys tried for the images / labels of the whole file, in order.
IMAGE_KEYS = ("images", "x")
LABEL_KEYS = ("labels", "y")

DESCRIPTION = """
Images in a NumPy .npz file (root is the file): uint8 arrays in layout NHWC, NCHW (detected from
a channel axis of size 1 or 3; option layout='NHWC'/'NCHW' when ambiguous) or NHW grey, returned
as uint8 (N, C, H, W). Either per-split arrays x_train / x_val / x_test (or images_train, ...)
with optional y_train / labels_train, ..., or one array images (or x) with optional labels (or y).
Missing splits are carved: val from train with val_fraction and seed; with a single array, test
with test_fraction (default 0.1, fixed seed) and val from the rest. Read with
numpy.load(allow_pickle=False). Name: 'npz:<file stem>'.
"""


def _describe_values(array: np.ndarray) -> str:
    if array.size == 0:
        return "no values"
    if array.dtype.kind == "f":
        return f"values {array.min():.4g}..{array.max():.4g}"
    return f"values {array.min()}..{array.max()}"


def _layout_of(array: object, key: str, path: Path, layout: str | None) -> str:
    """Check an image array and return its layout, ``"NHW"``, ``"NCHW"`` or ``"NHWC"``.

    Raises:
        DataFormatError: not a uint8 array of 3 or 4 dims with 1 or 3 channels and images of at
            least 1x1 pixels; the message names the array, the file, and what was found.
    """
    if not isinstance(array, np.ndarray):
        raise DataFormatError(
            f"npz: member {key!r} of {path} is not a NumPy array (save with numpy.savez)"
        )
    if array.dtype != np.uint8:
        values = _describe_values(array) if array.dtype.kind in "biuf" else "non-numeric values"
        if array.dtype.kind == "b":
            hint = "convert first, e.g. x.astype(np.uint8) * 255 for black-and-white images"
        elif array.dtype.kind in "iu" and array.size and array.min() >= 0 and array.max() <= 255:
            hint = "convert first with x.astype(np.uint8)"
        elif array.dtype.kind == "f":
            hint = "convert first, e.g. np.round(x * 255).astype(np.uint8) for floats in [0, 1]"
        else:
            hint = "pixel values must be whole numbers in 0..255"
        raise DataFormatError(
            f"npz: array {key!r} in {path} has dtype {array.dtype}; expected uint8 (0..255), "
            f"found {values}; {hint}"
        )
    if array.ndim == 3:
        found = "NHW"
    elif array.ndim == 4:
        if layout is None:
            first, last = array.shape[1] in (1, 3), array.shape[3] in (1, 3)
            if first == last:
                raise DataFormatError(
                    f"npz: cannot tell whether array {key!r} {array.shape} in {path} is NCHW or "
                    "NHWC (channels must be 1 or 3); pass layout='NCHW' or layout='NHWC'"
                )
            found = "NCHW" if first else "NHWC"
        else:
            found = layout
        channels = array.shape[1] if found == "NCHW" else array.shape[3]
        if channels not in (1, 3):
            raise DataFormatError(
                f"npz: array {key!r} in {path} has {channels} channels with layout {found}; "
                "expected 1 or 3"
            )
    else:
        raise DataFormatError(
            f"npz: array {key!r} in {path} has shape {array.shape}; expected (N, H, W), "
            "(N, H, W, C) or (N, C, H, W)"
        )
    hw = array.shape[2:4] if found == "NCHW" else array.shape[1:3]
    if min(hw) < 1:
        raise DataFormatError(
            f"npz: array {key!r} in {path} has shape {array.shape} ({found}): images of "
            f"{hw[0]}x{hw[1]} pixels; expected at least 1x1"
        )
    return found


def image_shape(array: np.ndarray, layout: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of one image of an array in ``layout`` (from :func:`_layout_of`)."""
    if layout == "NHW":
        return (1, int(array.shape[1]), int(array.shape[2]))
    if layout == "NHWC":
        return (int(array.shape[3]), int(array.shape[1]), int(array.shape[2]))
    return (int(array.shape[1]), int(array.shape[2]), int(array.shape[3]))


def to_nchw(array: np.ndarray, key: str, path: Path, layout: str | None) -> torch.Tensor:
    """A uint8 NHW / NHWC / NCHW array as a contiguous uint8 ``(N, C, H, W)`` tensor."""
    found = _layout_of(array, key, path, layout)
    if found == "NHW":
        array = array[:, None]
    elif found == "NHWC":
        array = array.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array))


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, read with ``allow_pickle=False``."""
    check_not_empty(path, "npz", "a .npz archive written by numpy.savez")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        raise DataFormatError(
            f"npz: {path} is a .npy file (one array), not a .npz archive; save the images with "
            "numpy.savez(path, images=x) (or x_train=..., x_test=...)"
        )
    if not head.startswith(b"PK"):
        raise DataFormatError(
            f"npz: {path} is not a .npz archive (a zip file of .npy arrays, as numpy.savez "
            f"writes); it starts with {head!r}"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError(f"numpy read it as {type(npz).__name__}, not an archive")
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataFormatError(
            f"npz: cannot read {path} as a .npz of plain arrays (no pickled objects; truncated "
            f"or corrupt?): {type(exc).__name__}: {short(exc)}"
        ) from exc


def _labels(
    arrays: dict[str, np.ndarray], keys: list[str], n: int, path: Path
) -> torch.Tensor | None:
    for key in keys:
        if key in arrays:
            y = np.asarray(arrays[key]).reshape(-1) if arrays[key].ndim == 2 else arrays[key]
            if y.ndim != 1 or y.shape[0] != n or not np.issubdtype(y.dtype, np.integer):
                raise DataFormatError(
                    f"npz: labels {key!r} in {path} must be {n} integers, got {y.dtype} {y.shape}"
                )
            return torch.from_numpy(y.astype(np.int64))
    return None


def _first(arrays: dict[str, np.ndarray], keys: list[str]) -> str | None:
    return next((k for k in keys if k in arrays), None)


@register_dataset("npz", DESCRIPTION)
def load_npz(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
    test_fraction: float = 0.1,
    layout: str | None = None,
) -> ImageDataset:
    """One split of the ``.npz`` file ``root`` as uint8 ``(N, C, H, W)`` (+ int64 labels)."""
    if root is None:
        raise DataOptionError("npz: pass root=<path of the .npz file>")
    if root.is_dir():
        raise DataNotFoundError(f"npz: {root} is a directory; root must be the path of a .npz file")
    if not root.is_file():
        raise DataNotFoundError(f"npz: no file {root} (root must be the path of a .npz file)")
    if download:
        raise DataOptionError("npz: download=True is not supported")
    if layout not in (None, "NCHW", "NHWC"):
        raise DataOptionError(f"npz: layout must be 'NCHW', 'NHWC' or None, got {layout!r}")
    test_fraction = check_fraction("test_fraction", test_fraction)
    arrays = _read_arrays(root)

    def split_keys(s: str) -> tuple[list[str], list[str]]:
        return [f"x_{s}", f"images_{s}"], [f"y_{s}", f"labels_{s}"]

    def get(s: str) -> tuple[torch.Tensor, torch.Tensor | None, str]:
        xkeys, ykeys = split_keys(s)
        key = _first(arrays, xkeys) or xkeys[0]
        x = to_nchw(arrays[key], key, root, layout)
        if x.shape[0] == 0:
            raise EmptyDatasetError(f"npz: array {key!r} in {root} holds no images")
        return x, _labels(arrays, ykeys, x.shape[0], root), key

    has = {s: _first(arrays, split_keys(s)[0]) is not None for s in ("train", "val", "test")}
    if any(has.values()):
        # every split's images must have one shape, or a model trained on one cannot read another
        shapes = {}
        for s in ("train", "val", "test"):
            key = _first(arrays, split_keys(s)[0])
            if key is not None:
                shapes[key] = image_shape(arrays[key], _layout_of(arrays[key], key, root, layout))
        if len(set(shapes.values())) > 1:
            found = ", ".join(f"{k} {v}" for k, v in shapes.items())
            raise DataFormatError(
                f"npz: the split arrays in {root} hold images of different shapes (C, H, W): "
                f"{found}; every split must have one image shape"
            )
        if has[split]:
            images, labels, _ = get(split)
        elif split == "val" and has["train"]:
            images, labels, _ = get("train")
        elif split == "train":
            raise DataFormatError(f"npz: {root} has split arrays but no x_train / images_train")
        else:
            raise DataFormatError(
                f"npz: {root} has no array for split {split!r} (expected x_{split} or "
                f"images_{split}); found {', '.join(sorted(arrays))}"
            )
        if split in ("train", "val") and not has["val"]:
            idx = train_val_indices(images.shape[0], split, val_fraction, seed)
            images = images[idx]
            labels = None if labels is None else labels[idx]
    else:
        key = _first(arrays, list(IMAGE_KEYS))
        if key is None:
            raise DataFormatError(
                f"npz: {root} has none of the arrays images, x, x_train, images_train; "
                f"found {', '.join(sorted(arrays)) or 'nothing'}"
            )
        images = to_nchw(arrays[key], key, root, layout)
        if images.shape[0] == 0:
            raise EmptyDatasetError(f"npz: array {key!r} in {root} holds no images")
        labels = _labels(arrays, list(LABEL_KEYS), images.shape[0], root)
        idx = train_val_test_indices(images.shape[0], split, val_fraction, test_fraction, seed)
        images = images[idx]
        labels = None if labels is None else labels[idx]
    if image_size is not None:
        images = resize(images.contiguous(), (image_size, image_size))
    return ImageDataset(
        images=images.contiguous(), name=f"npz:{root.stem}", split=split, labels=labels
    )
