"""CelebA on a fixture of small JPEGs in torchvision's layout with the partition file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import sigmavae.data.decode as decode_module
from sigmavae.data import (
    CorruptImageError,
    DataFormatError,
    DataNotFoundError,
    DataOptionError,
    load_dataset,
)

# (file, partition, uniform colour of the central 140x140 crop)
FILES = [
    ("000001.jpg", 0, (200, 40, 40)),
    ("000002.jpg", 0, (40, 200, 40)),
    ("000003.jpg", 0, (40, 40, 200)),
    ("000004.jpg", 1, (120, 120, 120)),
    ("000005.jpg", 2, (250, 250, 10)),
    ("000006.jpg", 2, (10, 90, 160)),
]


@pytest.fixture
def celeba_root(tmp_path):
    """178x218 JPEGs: a uniform centre square inside a black border."""
    folder = tmp_path / "celeba"
    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    lines = []
    for name, part, colour in FILES:
        arr = np.zeros((218, 178, 3), np.uint8)
        # the face colour covers the default 140x140 centre crop (rows 39..178, columns 19..158)
        # plus an 8-pixel margin, so JPEG ringing at the colour edge stays outside the crop
        arr[39 - 8 : 39 + 140 + 8, 19 - 8 : 19 + 140 + 8] = colour
        Image.fromarray(arr).save(images / name, quality=95)
        lines.append(f"{name} {part}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_splits_shapes_and_crop(celeba_root):
    sizes = {s: len(load_dataset("celeba", s, celeba_root)) for s in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 1, "test": 2}
    ds = load_dataset("celeba", "train", celeba_root)
    assert ds.images.shape == (3, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.name == "celeba" and ds.labels is None
    # the crop removes the black border: every pixel is the face colour (up to JPEG error)
    for img, (_, _, colour) in zip(ds.images, FILES[:3], strict=False):
        err = (img.float() - torch.tensor(colour, dtype=torch.float32)[:, None, None]).abs()
        assert float(err.max()) <= 4
    big = load_dataset("celeba", "test", celeba_root, image_size=64)
    assert big.images.shape == (2, 3, 64, 64)


def test_matches_independent_decode_crop_resize(celeba_root):
    ds = load_dataset("celeba", "test", celeba_root, image_size=64)
    for img, name in zip(ds.images, ["000005.jpg", "000006.jpg"], strict=True):
        with Image.open(celeba_root / "celeba" / "img_align_celeba" / name) as im:
            arr = np.asarray(im.convert("RGB"))
        crop = torch.from_numpy(arr[39:179, 19:159].copy()).permute(2, 0, 1)[None].float()
        ref = (
            F.interpolate(crop, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
            .round()
            .clamp(0, 255)
            .to(torch.uint8)[0]
        )
        assert torch.equal(img, ref)


def test_no_crop_keeps_the_border(celeba_root):
    ds = load_dataset("celeba", "val", celeba_root, crop=None, image_size=32)
    assert ds.images.shape == (1, 3, 32, 32)
    assert int(ds.images[0, :, 0, 0].max()) < 10  # the black corner survives without a crop
    with pytest.raises(DataOptionError, match="crop"):
        load_dataset("celeba", "val", celeba_root, crop=0)
    with pytest.raises(DataOptionError, match="centre-crop 218x178 images to 300x300"):
        load_dataset("celeba", "val", celeba_root, crop=300, cache=False)


def test_decoded_once_then_cached(celeba_root, monkeypatch):
    first = load_dataset("celeba", "train", celeba_root)
    monkeypatch.setattr(decode_module, "decode_images", None)  # any decode would now fail
    assert torch.equal(load_dataset("celeba", "train", celeba_root).images, first.images)


def test_missing_files(tmp_path, celeba_root):
    with pytest.raises(DataNotFoundError, match=r"list_eval_partition\.txt.*img_align_celeba"):
        load_dataset("celeba", "train", tmp_path / "elsewhere")
    (celeba_root / "celeba" / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataNotFoundError, match=r"000002\.jpg"):
        load_dataset("celeba", "train", celeba_root)


def test_malformed_partition_file(celeba_root):
    (celeba_root / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 7\n")
    with pytest.raises(DataFormatError, match=r"line 2 of .*list_eval_partition\.txt"):
        load_dataset("celeba", "train", celeba_root)
    (celeba_root / "celeba" / "list_eval_partition.txt").write_text("../../etc/passwd 0\n")
    with pytest.raises(DataFormatError, match="line 1"):
        load_dataset("celeba", "train", celeba_root)


def test_symlinked_image_folder(tmp_path, celeba_root, monkeypatch):
    """img_align_celeba is often a link to the unzipped images elsewhere."""
    first = load_dataset("celeba", "test", celeba_root, cache=False)
    images = celeba_root / "celeba" / "img_align_celeba"
    moved = tmp_path / "elsewhere" / "img_align_celeba"
    moved.parent.mkdir()
    images.rename(moved)
    try:
        images.symlink_to(moved, target_is_directory=True)
    except (OSError, NotImplementedError) as exc:
        pytest.skip(f"cannot create symbolic links here: {exc}")
    linked = load_dataset("celeba", "test", celeba_root)
    assert torch.equal(linked.images, first.images)
    monkeypatch.setattr(decode_module, "decode_images", None)  # the second load is a cache hit
    assert torch.equal(load_dataset("celeba", "test", celeba_root).images, first.images)


def _garbage_partition(path):
    path.write_bytes(bytes(range(14, 256)) * 3)  # binary, no newline


@pytest.mark.parametrize(
    ("breakage", "error", "pattern"),
    [
        (
            lambda f: (f / "list_eval_partition.txt").write_bytes(b""),
            DataFormatError,
            r"list_eval_partition\.txt is empty \(0 bytes\); expected a text file",
        ),
        (
            lambda f: _garbage_partition(f / "list_eval_partition.txt"),
            DataFormatError,
            r"line 1 of \S*list_eval_partition\.txt is .{1,60}; expected '<image file name>",
        ),
        (
            lambda f: (
                (f / "list_eval_partition.txt").unlink(),
                (f / "list_eval_partition.txt").mkdir(),
            ),
            DataNotFoundError,
            r"missing file\(s\) \S*list_eval_partition\.txt \(looked in",
        ),
        (
            lambda f: (f / "img_align_celeba" / "000002.jpg").write_bytes(b""),
            CorruptImageError,
            r"000002\.jpg: the file is empty \(0 bytes\)",
        ),
        (
            lambda f: Image.fromarray(np.zeros((100, 90, 3), np.uint8)).save(
                f / "img_align_celeba" / "000002.jpg"
            ),
            DataOptionError,
            r"image \S*000002\.jpg is 100x90 pixels, too small for the requested crop",
        ),
        (
            lambda f: (
                shutil.rmtree(f / "img_align_celeba"),
                (f / "img_align_celeba").write_text("not a folder"),
            ),
            DataNotFoundError,
            r"missing file\(s\) \S*img_align_celeba \(looked in",
        ),
    ],
    ids=[
        "empty-partition",
        "binary-partition",
        "partition-is-dir",
        "empty-jpeg",
        "small-jpeg",
        "image-folder-is-file",
    ],
)
def test_bad_files_give_one_clear_line(celeba_root, breakage, error, pattern):
    breakage(celeba_root / "celeba")
    with pytest.raises(error, match=pattern) as info:
        load_dataset("celeba", "train", celeba_root, cache=False)
    assert "\n" not in str(info.value) and len(str(info.value)) < 500


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"num_workers": 0}, r"celeba: num_workers must be a positive integer"),
        ({"on_error": "ignore"}, r"celeba: on_error must be 'raise' or 'skip'"),
        ({"cache": "no thanks"}, r"celeba: option cache must be True or False"),
    ],
)
def test_bad_options(celeba_root, options, pattern):
    with pytest.raises(DataOptionError, match=pattern):
        load_dataset("celeba", "train", celeba_root, **options)
