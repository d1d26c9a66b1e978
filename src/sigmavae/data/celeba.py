"""CelebA aligned faces in torchvision's layout: ``<root>/celeba/img_align_celeba/*.jpg``."""

from __future__ import annotations

from pathlib import Path

from .cache import decode_cached
from .dataset import ImageDataset
from .decode import check_decode_options
from .errors import DataFormatError, DataOptionError, EmptyDatasetError
from .paths import check_not_empty, not_found, resolve_root, short
from .registry import register_dataset

BASE_FOLDER = "celeba"
IMAGE_FOLDER = "img_align_celeba"
PARTITION_FILE = "list_eval_partition.txt"
#: Partition codes of ``list_eval_partition.txt``.
PARTITION_CODES = {"train": 0, "val": 1, "test": 2}
CELEBA_DEFAULT_SIZE = 32
CELEBA_DEFAULT_CROP = 140

DESCRIPTION = """
CelebA aligned and cropped faces (Liu et al. 2015): 178x218 RGB JPEGs, centre-cropped to 140x140
(option crop; None keeps the whole image) and resized to 32x32 by default (image_size, e.g. 64);
uint8 (N, 3, s, s), no labels. Official splits from list_eval_partition.txt: 162,770 train /
19,867 val / 19,962 test. root must contain torchvision's layout <root>/celeba/img_align_celeba/
(the JPEGs) and <root>/celeba/list_eval_partition.txt (the attribute, identity, bbox and landmark
files torchvision also fetches are not needed). Get them with download=True on a machine with
internet (torchvision, from Google Drive, often rate-limited) or from the CelebA page
(img_align_celeba.zip). Decoding is done once (threads) and cached as a .pt file under
$SIGMAVAE_CACHE/celeba or ~/.cache/sigmavae/celeba (options cache, cache_dir, num_workers,
on_error).
"""

_HOW = (
    "pass download=True on a machine with internet, or unzip img_align_celeba.zip into "
    "<root>/celeba/img_align_celeba/ and put list_eval_partition.txt in <root>/celeba/ "
    "(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)"
)


def read_partition(path: Path) -> dict[str, list[str]]:
    """``list_eval_partition.txt`` -> ``{"train": [file names], "val": [...], "test": [...]}``."""
    out: dict[str, list[str]] = {s: [] for s in PARTITION_CODES}
    names = {v: k for k, v in PARTITION_CODES.items()}
    expected = "lines '<image file name> <0|1|2>' (0 train, 1 val, 2 test)"
    check_not_empty(path, "celeba", f"a text file of {expected}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataFormatError(
            f"celeba: cannot read {path}: {type(exc).__name__}: {short(exc)}; expected {expected}"
        ) from exc
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if (
            len(fields) != 2
            or fields[1] not in ("0", "1", "2")
            or "/" in fields[0]
            or "\\" in fields[0]
            or fields[0].startswith(".")
        ):
            shown = repr(line.strip())
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise DataFormatError(
                f"celeba: line {number} of {path} is {shown}; expected '<image file name> "
                "<0|1|2>' (0 train, 1 val, 2 test)"
            )
        out[names[int(fields[1])]].append(fields[0])
    return out


@register_dataset("celeba", DESCRIPTION)
def load_celeba(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
    crop: int | None = CELEBA_DEFAULT_CROP,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    num_workers: int | None = None,
    on_error: str = "raise",
) -> ImageDataset:
    """CelebA ``split`` as uint8 ``(N, 3, s, s)``, ``s = image_size`` (default 32).

    Each 178x218 image is centre-cropped to ``crop x crop`` pixels (default 140) and resized with
    antialiased bilinear interpolation. ``val_fraction`` and ``seed`` are ignored (CelebA has an
    official validation split).
    """
    del val_fraction, seed
    check_decode_options("celeba", on_error, num_workers)
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 1):
        raise DataOptionError(f"celeba: crop must be a positive int (pixels) or None, got {crop!r}")
    root = resolve_root(root)
    folder = root / BASE_FOLDER
    partition = folder / PARTITION_FILE
    image_dir = folder / IMAGE_FOLDER
    if download and not (partition.is_file() and image_dir.is_dir()):
        from torchvision.datasets import CelebA

        CelebA(str(root), split="all", target_type=[], download=True)
    missing = [
        p for p, ok in ((partition, partition.is_file()), (image_dir, image_dir.is_dir())) if not ok
    ]
    if missing:
        raise not_found("celeba", missing, folder, _HOW)
    names = read_partition(partition)[split]
    if not names:
        raise EmptyDatasetError(f"celeba: {partition} lists no images for split {split!r}")
    files = [image_dir / n for n in names]
    absent = [p for p in files if not p.is_file()]
    if absent:
        raise not_found("celeba", absent, image_dir, _HOW)
    side = CELEBA_DEFAULT_SIZE if image_size is None else image_size
    images, _ = decode_cached(
        files,
        base=folder,
        kind="celeba",
        decode_options={"channels": 3, "image_size": side, "crop": crop, "on_error": on_error},
        cache=cache,
        cache_dir=cache_dir,
        num_workers=num_workers,
    )
    return ImageDataset(images=images, name="celeba", split=split)
