"""Frey Face: 1965 grey 28x20 frames of Brendan Frey's face, shipped inside the package."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataFormatError, DataNotFoundError
from .registry import register_dataset
from .transforms import resize

#: File name on Sam Roweis' data page and in the package's ``data/assets``.
FREY_FILE = "frey_rawface.mat"
#: Frames in the published file, and their size in pixels (rows, columns).
FREY_FRAMES = 1965
FREY_HW = (28, 20)
#: Fixed split sizes (train, val, test); they sum to 1965.
FREY_SPLIT_SIZES = {"train": 1565, "val": 200, "test": 200}
#: Seed of the permutation that assigns frames to splits (fixed: ignores the user's ``seed``).
FREY_SPLIT_SEED = 1965

DESCRIPTION = """
Frey Face (Brendan Frey; Sam Roweis' data page): 1965 grey frames of one face, 28 rows x 20
columns, kept at native size (uint8, shape (N, 1, 28, 20)). Shipped inside the package as
data/assets/frey_rawface.mat (MATLAB v5, variable ff, uint8 (560, 1965)), so root is optional;
root may name another copy of frey_rawface.mat or a directory holding it. Fixed split, the same
for every user: a permutation seeded with 1965 (not the user's seed or val_fraction) gives 1565
train / 200 val / 200 test frames, each kept in video order. No labels.
"""


@contextlib.contextmanager
def _mat_path(root: Path | None) -> Iterator[Path]:
    if root is None:
        with resources.as_file(resources.files("sigmavae.data") / "assets" / FREY_FILE) as p:
            yield Path(p)
        return
    path = root / FREY_FILE if root.is_dir() else root
    if not path.is_file():
        raise DataNotFoundError(
            f"frey: no file {path}. Pass root=None to use the copy shipped with sigmavae, or point "
            f"root at {FREY_FILE} (from Sam Roweis' data page) or a directory holding it"
        )
    yield path


def read_frey_frames(path: Path) -> torch.Tensor:
    """All 1965 frames of a ``frey_rawface.mat`` as uint8 ``(1965, 1, 28, 20)``.

    The file holds ``ff``, uint8 ``(560, 1965)``: one column per frame, 28x20 pixels in row-major
    order, so the frames are ``ff.T.reshape(-1, 28, 20)``.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=["ff"])
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, ...
        raise DataFormatError(f"frey: cannot read {path} as a MATLAB .mat file: {exc}") from exc
    if "ff" not in mat:
        raise DataFormatError(f"frey: {path} has no variable 'ff' (expected uint8 (560, 1965))")
    ff = mat["ff"]
    h, w = FREY_HW
    if ff.dtype != np.uint8 or ff.ndim != 2 or ff.shape[0] != h * w or ff.shape[1] < 1:
        raise DataFormatError(
            f"frey: variable 'ff' in {path} is {ff.dtype} {ff.shape}; expected uint8 "
            f"({h * w}, n_frames), one 28x20 frame per column"
        )
    frames = np.ascontiguousarray(ff.T).reshape(-1, 1, h, w)
    return torch.from_numpy(frames.copy())


def frey_split_indices(n: int = FREY_FRAMES) -> dict[str, torch.Tensor]:
    """Sorted int64 frame indices of each split: a seeded permutation cut 1565 / 200 / 200."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(FREY_SPLIT_SEED))
    n_val, n_test = FREY_SPLIT_SIZES["val"], FREY_SPLIT_SIZES["test"]
    if n != FREY_FRAMES:  # another copy with a different frame count: same 80/10/10-ish cut
        n_val = n_test = max(1, round(n * 200 / FREY_FRAMES))
    if n_val + n_test >= n:
        raise DataFormatError(f"frey: only {n} frames; too few to split")
    return {
        "test": torch.sort(perm[:n_test]).values,
        "val": torch.sort(perm[n_test : n_test + n_val]).values,
        "train": torch.sort(perm[n_test + n_val :]).values,
    }


@register_dataset("frey", DESCRIPTION)
def load_frey(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
) -> ImageDataset:
    """Frey Face ``split`` as uint8 ``(N, 1, 28, 20)`` (or ``(N, 1, s, s)`` with ``image_size=s``).

    ``download``, ``val_fraction`` and ``seed`` are ignored: the file ships with the package and
    the split is fixed (1565 train / 200 val / 200 test).
    """
    del download, val_fraction, seed
    with _mat_path(root) as path:
        frames = read_frey_frames(path)
    images = frames[frey_split_indices(frames.shape[0])[split]]
    if image_size is not None:
        images = resize(images, (image_size, image_size))
    return ImageDataset(images=images.contiguous(), name="frey", split=split)
