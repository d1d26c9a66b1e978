"""CIFAR-10 in its published Python format: ``<root>/cifar-10-batches-py/``.

We read the batch files ourselves instead of through ``torchvision.datasets.CIFAR10`` because that
class insists on the published MD5 sums (so it cannot read anything else, e.g. test fixtures);
the format read here is exactly the published one. The batches are pickles: we only ever unpickle
these known file names, which are the official files from the CIFAR-10 page (trusted input), and
we do it with a restricted unpickler that can build nothing but dicts, lists, bytes, numbers and
numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataFormatError, EmptyDatasetError
from .paths import check_not_empty, not_found, resolve_root, short, verify_md5
from .registry import register_dataset
from .splits import train_val_indices
from .transforms import resize

BASE_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)

DESCRIPTION = """
CIFAR-10 (Krizhevsky 2009): 32x32 RGB natural images in 10 classes, uint8 (N, 3, 32, 32), labels
0-9. Official splits 50,000 train / 10,000 test; val is carved from the official train split
(val_fraction, seed). root must contain torchvision's layout <root>/cifar-10-batches-py/ with the
published Python pickles data_batch_1 ... data_batch_5 and test_batch (dicts with b'data' uint8
(10000, 3072) and b'labels'); get them with download=True on a machine with internet
(torchvision) or from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz.
check_md5=True verifies torchvision's published sums. For a folder of CIFAR-10 JPEGs use the
'folder' set and report results as 'CIFAR-10 (JPEG copy)'.
"""

_HOW = (
    "pass download=True on a machine with internet, or extract cifar-10-python.tar.gz "
    "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) into <root>, giving "
    "<root>/cifar-10-batches-py/data_batch_1..5 and test_batch"
)


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as _legacy_reconstruct

        return _legacy_reconstruct
    return _reconstruct


def _numpy_frombuffer() -> Any:
    try:
        # numpy's stubs leave out this private pickle helper; it exists at run time.
        from numpy._core.numeric import _frombuffer  # type: ignore[attr-defined]
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer as _legacy_frombuffer

        return _legacy_frombuffer
    return _frombuffer


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a CIFAR batch (a dict of numpy arrays) needs."""

    _ALLOWED: ClassVar[dict[tuple[str, str], Callable[[], Any]]] = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: codecs.encode,
        ("__builtin__", "bytes"): lambda: bytes,  # protocol 2 spells an empty bytes b"" so
        ("builtins", "bytes"): lambda: bytes,
    }

    def find_class(self, module: str, name: str) -> Any:
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return factory()


def read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 batch file: uint8 images ``(n, 3, 32, 32)`` and int64 labels ``(n,)``."""
    check_not_empty(path, "cifar10", "a CIFAR-10 python batch (a pickled dict)")
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ...
        raise DataFormatError(
            f"cifar10: cannot read {path} as a CIFAR-10 python batch: "
            f"{type(exc).__name__}: {short(exc)}"
        ) from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataFormatError(f"cifar10: {path} is not a dict with keys b'data' and b'labels'")
    data = batch[b"data"]
    try:
        labels = np.asarray(batch[b"labels"])
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise DataFormatError(
            f"cifar10: b'labels' in {path} is not a flat list of integers (one per image, 0..9)"
        ) from exc
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
    ):
        shape = getattr(data, "shape", None)
        raise DataFormatError(
            f"cifar10: b'data' in {path} is {getattr(data, 'dtype', type(data))} {shape}; "
            "expected uint8 (n, 3072) (rows of 1024 red, 1024 green, 1024 blue)"
        )
    if data.shape[0] == 0:
        raise EmptyDatasetError(f"cifar10: b'data' in {path} holds no images")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(
            f"cifar10: b'labels' in {path} must be {data.shape[0]} integers, got "
            f"{labels.dtype} {labels.shape}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise DataFormatError(
            f"cifar10: labels in {path} must be 0..9, got {labels.min()}..{labels.max()}"
        )
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def _md5s() -> dict[str, str]:
    from torchvision.datasets import CIFAR10

    return dict(CIFAR10.train_list + CIFAR10.test_list)


@register_dataset("cifar10", DESCRIPTION)
def load_cifar10(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
    check_md5: bool = False,
) -> ImageDataset:
    """CIFAR-10 ``split`` as uint8 ``(N, 3, 32, 32)`` (or ``image_size`` square) + int64 labels."""
    root = resolve_root(root)
    folder = root / BASE_FOLDER
    paths = [folder / name for name in (TEST_FILES if split == "test" else TRAIN_FILES)]
    if download and not all(p.is_file() for p in paths):
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=split != "test", download=True)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise not_found("cifar10", missing, folder, _HOW)
    if check_md5:
        md5s = _md5s()
        for p in paths:
            verify_md5(p, md5s[p.name], "cifar10")
    batches = [read_cifar_batch(p) for p in paths]
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    if split != "test":
        idx = train_val_indices(images.shape[0], split, val_fraction, seed)
        images, labels = images[idx], labels[idx]
    if image_size is not None:
        images = resize(images, (image_size, image_size))
    return ImageDataset(images=images.contiguous(), name="cifar10", split=split, labels=labels)
