"""Frey Face: 1965 grey 28x20 frames of Brendan Frey's face, shipped inside the package."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataFormatError, DataNotFoundError, DataOptionError
from .paths import check_not_empty, short
from .registry import register_dataset
from .transforms import resize

#: File name on Sam Roweis' data page and in the package's ``data/assets``.
FREY_FILE = "frey_rawface.mat"
#: Frames in the published file, and their size in pixels (rows, columns).
FREY_FRAMES = 1965
FREY_HW = (28, 20)
#: Fixed split sizes (train, val, test); they sum to 1965.
FREY_SPLIT_SIZES = {"train": 1565, "val": 200, "test": 200}
#: Frames per block of consecutive frames; whole blocks are assigned to one split. 40 frames is
#: about the video's decorrelation length: the median RMS distance between frames ``k`` apart
#: rises from 18 (``k = 1``) to about 34 at ``k = 40`` and stays there (34-37 up to ``k = 200``).
#: 200 = 5 x 40, so val and test are 5 whole blocks each; 1965 = 49 x 40 + 5.
FREY_BLOCK_FRAMES = 40
#: Seed of the permutation of blocks that assigns blocks to splits (fixed: ignores the user's
#: ``seed``).
FREY_SPLIT_SEED = 1965

DESCRIPTION = """
Frey Face (Brendan Frey; Sam Roweis' data page): 1965 grey frames of one face, 28 rows x 20
columns, kept at native size (uint8, shape (N, 1, 28, 20)). Shipped inside the package as
data/assets/frey_rawface.mat (MATLAB v5, variable ff, uint8 (560, 1965)), so root is optional;
root may name another copy of frey_rawface.mat or a directory holding it. Fixed split, the same
for every user (not the user's seed or val_fraction): the frames are one video, so they are cut
into blocks of 40 consecutive frames and a permutation of the blocks seeded with 1965 gives
5 blocks test, 5 blocks val and the rest train: 1565 train / 200 val / 200 test frames, each in
video order. Whole blocks keep test frames away from their near-duplicate neighbours in train.
No labels.
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

    expected = "a MATLAB v5 .mat file with variable ff, uint8 (560, n_frames)"
    check_not_empty(path, "frey", expected)
    try:
        mat = loadmat(str(path), variable_names=["ff"])
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, ...
        raise DataFormatError(
            f"frey: cannot read {path} as {expected}: {type(exc).__name__}: {short(exc)}"
        ) from exc
    if "ff" not in mat:
        raise DataFormatError(f"frey: {path} has no variable 'ff' (expected uint8 (560, 1965))")
    ff = mat["ff"]
    h, w = FREY_HW
    if (
        not isinstance(ff, np.ndarray)
        or ff.dtype != np.uint8
        or ff.ndim != 2
        or ff.shape[0] != h * w
        or ff.shape[1] < 1
    ):
        kind = f"{ff.dtype} {ff.shape}" if isinstance(ff, np.ndarray) else type(ff).__name__
        raise DataFormatError(
            f"frey: variable 'ff' in {path} is {kind}; expected uint8 "
            f"({h * w}, n_frames), one 28x20 frame per column"
        )
    frames = np.ascontiguousarray(ff.T).reshape(-1, 1, h, w)
    return torch.from_numpy(frames.copy())


def frey_split_sizes(n: int) -> tuple[int, int]:
    """``(n_val, n_test)``, in frames, for a file of ``n`` frames.

    200 / 200 for the published 1965 frames, else the same share of ``n``:
    ``round(n * 200 / 1965)`` each, at least 1.
    """
    if n == FREY_FRAMES:
        return FREY_SPLIT_SIZES["val"], FREY_SPLIT_SIZES["test"]
    k = max(1, round(n * FREY_SPLIT_SIZES["test"] / FREY_FRAMES))
    return k, k


def frey_split_indices(
    n: int = FREY_FRAMES, *, block: int = FREY_BLOCK_FRAMES
) -> dict[str, torch.Tensor]:
    """Sorted int64 frame indices of each split, formed from whole blocks of consecutive frames.

    Frames ``0..n-1`` are cut into ``n // L`` full blocks of ``L`` consecutive frames (the last
    ``n % L`` frames form a short tail that always goes to ``train``). A permutation of the full
    blocks under a generator seeded with :data:`FREY_SPLIT_SEED` picks the first
    ``ceil(n_test / L)`` blocks for ``test`` and the next ``ceil(n_val / L)`` for ``val``; every
    other frame is ``train``. When a split's size is not a multiple of ``L``, its last picked block
    (in permutation order) keeps only its first frames and the rest of that block goes to
    ``train``, so the sizes are exact. For the published file (``n = 1965``, ``L = 40``) that is 5
    whole blocks each for test and val: 1565 / 200 / 200.

    ``L`` is ``block`` (:data:`FREY_BLOCK_FRAMES`, 40 frames), or ``min(n_val, n_test)`` for a
    short file whose splits are smaller than one block (down to single frames for ``n < 15``).

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``, disjoint and together ``range(n)``.

    Raises:
        DataFormatError: if ``n`` is too small to give every split at least one frame.
    """
    n_val, n_test = frey_split_sizes(n)
    if n_val + n_test >= n:
        raise DataFormatError(f"frey: only {n} frames; too few to split")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise DataOptionError(f"frey: block must be a positive number of frames, got {block!r}")
    # With length <= n_test = n_val ~ n / 9.8 the ceil(n_test / length) + ceil(n_val / length)
    # blocks needed always fit in the n // length full blocks, with some left for train.
    length = min(block, n_val, n_test)
    n_blocks = n // length
    perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(FREY_SPLIT_SEED))
    owner = torch.zeros(n, dtype=torch.int64)  # 0 train, 1 val, 2 test
    cursor = 0
    for code, size in ((2, n_test), (1, n_val)):
        remaining = size
        while remaining > 0:
            start = int(perm[cursor]) * length
            take = min(length, remaining)
            owner[start : start + take] = code
            remaining -= take
            cursor += 1
    return {
        split: torch.nonzero(owner == code).flatten()
        for split, code in (("test", 2), ("val", 1), ("train", 0))
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
    the split is fixed: whole blocks of 40 consecutive frames, 1565 train / 200 val / 200 test
    (see :func:`frey_split_indices`).
    """
    del download, val_fraction, seed
    with _mat_path(root) as path:
        frames = read_frey_frames(path)
    n = int(frames.shape[0])
    if sum(frey_split_sizes(n)) >= n:
        raise DataFormatError(
            f"frey: {path} holds only {n} frame(s); expected at least 3 (one each for train, val "
            f"and test; the published file has {FREY_FRAMES})"
        )
    images = frames[frey_split_indices(n)[split]]
    if image_size is not None:
        images = resize(images, (image_size, image_size))
    return ImageDataset(images=images.contiguous(), name="frey", split=split)
