"""Any directory tree of image files, decoded once and cached as a uint8 tensor."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from .cache import decode_cached
from .dataset import ImageDataset
from .decode import channels_of, check_decode_options
from .errors import (
    CorruptImageError,
    DataFormatError,
    DataNotFoundError,
    DataOptionError,
    EmptyDatasetError,
)
from .registry import register_dataset
from .splits import check_fraction, train_val_indices, train_val_test_indices

#: File name endings (lower case) read as images; everything else is ignored.
IMAGE_EXTENSIONS = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pbm",
    ".pgm",
    ".png",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)
#: Sub-folder names recognised as explicit splits (``train/`` and ``test/`` must both exist).
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}

#: Seed of the fixed order of ``shuffle=True`` (independent of the run's seed).
SHUFFLE_SEED = 20_200_601

DESCRIPTION = """
Any directory tree of images (png, jpg/jpeg, bmp, gif, webp, tif, ppm/pgm): root is the
directory; files are found recursively (hidden files and folders skipped) in sorted path order and
decoded once with Pillow into uint8 (N, C, H, W), then cached as a .pt file
($SIGMAVAE_CACHE/folders or ~/.cache/sigmavae/folders; options cache, cache_dir). Splits: if root
has train/ and test/ sub-folders they are used (val/ too, else val is carved from train/ with
val_fraction and seed); otherwise test is carved with test_fraction (default 0.1, fixed seed,
independent of seed) and val from the rest with val_fraction and seed. Options: channels (1 or 3;
default from the first image), image_size with crop=True to centre-crop to a square first
(crop=False resizes without keeping the aspect ratio), labels=True for class labels from the first
sub-folder level (ImageFolder convention), on_error='raise' or 'skip' for undecodable files,
num_workers decoding threads, shuffle=True to put each split in a fixed random order (its own
seed, independent of seed) so that a first-N subset (train_subset, --limit) of a class-sorted
tree is a random sample, not the first classes. All images must have one size unless image_size
is given.
Symbolic links (a linked root, linked sub-folders or linked files) are followed like ordinary
folders and files. Name: 'folder:<directory name>' (the name of root as given).
"""


def list_images(directory: Path) -> list[Path]:
    """Image files under ``directory``, recursively, sorted by relative path; hidden skipped.

    Symbolic links are followed like ordinary files and folders (a linked data set loads like a
    copied one); the returned paths are spelled below ``directory`` (links are not resolved). A
    folder link that leads back to one of its own parent folders (a loop) is skipped with a
    warning.
    """
    found: list[tuple[str, Path]] = []
    top = os.fspath(directory)
    # the real paths of each folder and its parents
    chains: dict[str, tuple[str, ...]] = {top: (os.path.realpath(top),)}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        chain = chains.pop(dirpath, (os.path.realpath(dirpath),))
        keep = []
        for d in dirnames:
            if d.startswith("."):
                continue
            sub = os.path.join(dirpath, d)
            real = os.path.realpath(sub)
            if real in chain:
                warnings.warn(
                    f"folder: skipping {sub}: a symbolic link loop (it leads back to {real})",
                    stacklevel=2,
                )
                continue
            chains[sub] = (*chain, real)
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                path = Path(dirpath) / name
                found.append((path.relative_to(directory).as_posix(), path))
    return [p for _, p in sorted(found)]


def _check_links(files: list[Path], on_error: str) -> None:
    """Raise :class:`DataNotFoundError` for the first broken symbolic link (unless skipping)."""
    if on_error == "skip":
        return  # the decoder skips it with a CorruptImageWarning naming it
    for f in files:
        if not f.exists():
            target = os.readlink(f) if f.is_symlink() else None
            what = (
                f"a broken symbolic link (its target {target} does not exist)"
                if target
                else "gone (it was listed but no longer exists)"
            )
            raise DataNotFoundError(
                f"folder: image file {f} is {what}; fix or remove it, or pass on_error='skip'"
            )


def _split_dirs(root: Path) -> dict[str, Path] | None:
    """``{"train": ..., "test": ..., ["val": ...]}`` if ``root`` has train/ and test/, else None."""
    dirs: dict[str, Path] = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if (root / name).is_dir():
                dirs[split] = root / name
                break
    return dirs if "train" in dirs and "test" in dirs else None


def _detect_channels(files: list[Path], on_error: str) -> int:
    for f in files:
        try:
            return channels_of(f)
        except CorruptImageError:
            if on_error == "raise":
                raise
    raise EmptyDatasetError(f"none of the {len(files)} image files could be read")


def _class_of(path: Path, split_root: Path) -> str:
    parts = path.relative_to(split_root).parts
    if len(parts) < 2:
        raise DataFormatError(
            f"folder: labels=True needs every image in a class sub-folder of {split_root}, "
            f"but {path} is directly inside it"
        )
    return parts[0]


@register_dataset("folder", DESCRIPTION)
def load_folder(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
    test_fraction: float = 0.1,
    crop: bool = False,
    channels: int | None = None,
    labels: bool = False,
    on_error: str = "raise",
    cache: bool = True,
    cache_dir: str | Path | None = None,
    num_workers: int | None = None,
    shuffle: bool = False,
) -> ImageDataset:
    """Images under ``root`` as uint8 ``(N, C, H, W)`` (``H = W = image_size`` if given)."""
    if root is None:
        raise DataOptionError("folder: pass root=<directory of images>")
    if not root.is_dir():
        raise DataNotFoundError(
            f"folder: {root} is not a directory (root must be a folder of images)"
        )
    if download:
        raise DataOptionError("folder: download=True is not supported (the images are your own)")
    if channels not in (None, 1, 3):
        raise DataOptionError(f"folder: channels must be 1, 3 or None, got {channels!r}")
    check_decode_options("folder", on_error, num_workers)
    test_fraction = check_fraction("test_fraction", test_fraction)

    dirs = _split_dirs(root)
    if dirs is None:  # one collection: carve test (fixed seed) and val (user's seed)
        base = root
        files = list_images(root)
        if not files:
            raise EmptyDatasetError(
                f"folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}"
            )
        positions = train_val_test_indices(len(files), split, val_fraction, test_fraction, seed)
        class_roots = [root]
    else:
        source = (
            "test" if split == "test" else ("val" if split == "val" and "val" in dirs else "train")
        )
        base = dirs[source]
        files = list_images(base)
        if not files:
            raise EmptyDatasetError(
                f"folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {base}"
            )
        if source == "train" and "val" not in dirs:
            positions = train_val_indices(len(files), split, val_fraction, seed)
        else:
            positions = torch.arange(len(files))
        class_roots = list(dirs.values())

    _check_links(files, on_error)
    if channels is None:
        first_files = list_images(dirs["train"]) if dirs is not None else files
        channels = _detect_channels(first_files or files, on_error)
    images, kept = decode_cached(
        files,
        base=base,
        kind="folders",
        decode_options={
            "channels": channels,
            "image_size": image_size,
            "crop": "square" if crop else None,
            "on_error": on_error,
        },
        cache=cache,
        cache_dir=cache_dir,
        num_workers=num_workers,
    )
    row_of = torch.full((len(files),), -1, dtype=torch.int64)
    row_of[kept] = torch.arange(kept.numel())
    rows = row_of[positions]
    rows = rows[rows >= 0]
    if shuffle:  # a fixed order per split, the same for every run seed
        order = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(SHUFFLE_SEED))
        rows = rows[order]
    selected = images[rows].contiguous()

    targets = None
    if labels:
        classes = sorted(
            {
                d.name
                for r in class_roots
                for d in r.iterdir()
                if d.is_dir() and not d.name.startswith(".")
            }
        )
        index = {c: i for i, c in enumerate(classes)}
        file_classes = [index[_class_of(files[int(p)], base)] for p in kept[rows]]
        targets = torch.tensor(file_classes, dtype=torch.int64)
    return ImageDataset(
        images=selected,
        name=f"folder:{Path(os.path.abspath(root)).name}",
        split=split,
        labels=targets,
    )
