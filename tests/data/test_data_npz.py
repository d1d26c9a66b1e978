"""Images in .npz files: layouts, split keys, carving, errors."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from sigmavae.data import (
    DataFormatError,
    DataNotFoundError,
    DataOptionError,
    EmptyDatasetError,
    load_dataset,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NHW"])
def test_layouts_are_detected(tmp_path, rng, layout):
    nchw = rng.integers(0, 256, size=(20, 1 if layout == "NHW" else 3, 5, 7), dtype=np.uint8)
    stored = {"NHWC": nchw.transpose(0, 2, 3, 1), "NCHW": nchw, "NHW": nchw[:, 0]}[layout]
    labels = np.arange(20, dtype=np.int32)
    np.savez(tmp_path / "d.npz", images=stored, labels=labels)
    parts = {
        s: load_dataset("npz", s, tmp_path / "d.npz", test_fraction=0.2, val_fraction=0.25)
        for s in ("train", "val", "test")
    }
    assert [len(p) for p in parts.values()] == [12, 4, 4]
    for p in parts.values():
        assert p.name == "npz:d" and p.images.dtype == torch.uint8 and p.images.is_contiguous()
        assert torch.equal(p.images, torch.from_numpy(nchw[p.labels.numpy()]))
    every = torch.cat([p.labels for p in parts.values()]).sort().values
    assert every.tolist() == list(range(20))


def test_split_keys_and_val_carving(tmp_path, rng):
    x_train = rng.integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", x_train=x_train, x_test=x_test, y_train=np.arange(10))
    test = load_dataset("npz", "test", tmp_path / "s.npz")
    assert torch.equal(test.images, torch.from_numpy(x_test.transpose(0, 3, 1, 2).copy()))
    assert test.labels is None
    train = load_dataset("npz", "train", tmp_path / "s.npz", val_fraction=0.3)
    val = load_dataset("npz", "val", tmp_path / "s.npz", val_fraction=0.3)
    assert (len(train), len(val)) == (7, 3)
    assert sorted(train.labels.tolist() + val.labels.tolist()) == list(range(10))
    np.savez(tmp_path / "v.npz", x_train=x_train, x_val=x_test, x_test=x_test)
    assert len(load_dataset("npz", "train", tmp_path / "v.npz")) == 10
    assert len(load_dataset("npz", "val", tmp_path / "v.npz")) == 3
    np.savez(tmp_path / "t.npz", x_train=x_train)
    with pytest.raises(DataFormatError, match=r"no array for split 'test'.*x_test"):
        load_dataset("npz", "test", tmp_path / "t.npz")


def test_image_size(tmp_path, rng):
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, size=(10, 8, 8), dtype=np.uint8))
    ds = load_dataset("npz", "train", tmp_path / "d.npz", image_size=4)
    assert ds.images.shape == (8, 1, 4, 4)


def test_errors(tmp_path, rng):
    path = tmp_path / "e.npz"
    with pytest.raises(DataNotFoundError, match=r"e\.npz"):
        load_dataset("npz", "train", path)
    np.savez(path, images=np.zeros((4, 3, 5, 3), np.uint8))
    with pytest.raises(DataFormatError, match=r"NCHW or NHWC.*layout="):
        load_dataset("npz", "train", path)
    assert load_dataset(
        "npz", "train", path, layout="NHWC", test_fraction=0.25, val_fraction=0.0
    ).image_shape == (3, 3, 5)
    with pytest.raises(DataOptionError, match="layout"):
        load_dataset("npz", "train", path, layout="CHW")
    np.savez(path, images=np.zeros((4, 5, 5, 3), np.float32))
    with pytest.raises(DataFormatError, match="dtype float32; expected uint8"):
        load_dataset("npz", "train", path)
    np.savez(path, pictures=np.zeros((4, 5, 5), np.uint8))
    with pytest.raises(DataFormatError, match=r"none of the arrays images, x.*found pictures"):
        load_dataset("npz", "train", path)
    np.savez(path, images=np.array([object(), object()], dtype=object))
    with pytest.raises(DataFormatError, match="no pickled objects"):
        load_dataset("npz", "train", path)
    np.savez(path, images=np.zeros((0, 5, 5), np.uint8))
    with pytest.raises(EmptyDatasetError, match="holds no images"):
        load_dataset("npz", "train", path)
    np.savez(path, images=np.zeros((4, 5, 5), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(DataFormatError, match="must be 4 integers"):
        load_dataset("npz", "train", path)
    path.write_bytes(b"PK not really a zip")
    with pytest.raises(DataFormatError, match="cannot read"):
        load_dataset("npz", "train", path)
    with pytest.raises(DataOptionError, match="root="):
        load_dataset("npz", "train")


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _zip_with_raw_member() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("images", b"not an array")  # a member without .npy: numpy returns bytes
    return buf.getvalue()


_IMGS = np.arange(20 * 5 * 5, dtype=np.int64).reshape(20, 5, 5) % 256

BAD_NPZ = [
    ("empty", b"", DataFormatError, r"d\.npz is empty \(0 bytes\); expected a \.npz archive"),
    (
        "truncated",
        _npz_bytes(images=_IMGS.astype(np.uint8))[:300],
        DataFormatError,
        r"cannot read \S*d\.npz as a \.npz of plain arrays \(no pickled objects; truncated or",
    ),
    (
        "random-bytes",
        bytes(range(7, 200)),
        DataFormatError,
        r"d\.npz is not a \.npz archive \(a zip file of \.npy arrays",
    ),
    ("npy-file", _npy_bytes(_IMGS.astype(np.uint8)), DataFormatError, r"d\.npz is a \.npy file"),
    (
        "raw-zip-member",
        _zip_with_raw_member(),
        DataFormatError,
        r"member 'images' of \S*d\.npz is not a NumPy array",
    ),
    (
        "int64-in-range",
        _npz_bytes(images=_IMGS),
        DataFormatError,
        r"dtype int64; expected uint8 \(0\.\.255\), found values 0\.\.255; convert first with "
        r"x\.astype\(np\.uint8\)",
    ),
    (
        "int64-out-of-range",
        _npz_bytes(images=_IMGS + 300),
        DataFormatError,
        r"dtype int64; expected uint8 \(0\.\.255\), found values 300\.\.555; pixel values must",
    ),
    (
        "negative",
        _npz_bytes(images=_IMGS.astype(np.int16) - 5),
        DataFormatError,
        r"found values -5\.\.250",
    ),
    (
        "bool",
        _npz_bytes(images=_IMGS > 3),
        DataFormatError,
        r"dtype bool; .*x\.astype\(np\.uint8\) \* 255",
    ),
    (
        "zero-height",
        _npz_bytes(images=np.zeros((20, 0, 5), np.uint8)),
        DataFormatError,
        r"images of 0x5 pixels; expected at least 1x1",
    ),
    (
        "splits-differ",
        _npz_bytes(x_train=np.zeros((8, 5, 5), np.uint8), x_test=np.zeros((4, 8, 8, 3), np.uint8)),
        DataFormatError,
        r"hold images of different shapes \(C, H, W\): x_train \(1, 5, 5\), x_test \(3, 8, 8\)",
    ),
]


@pytest.mark.parametrize(
    ("content", "error", "pattern"),
    [case[1:] for case in BAD_NPZ],
    ids=[case[0] for case in BAD_NPZ],
)
def test_bad_files_give_one_clear_line(tmp_path, content, error, pattern):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(error, match=pattern) as info:
        load_dataset("npz", "train", path)
    assert "\n" not in str(info.value)


def test_root_is_a_directory(tmp_path):
    with pytest.raises(
        DataNotFoundError, match=r"is a directory; root must be the path of a \.npz"
    ):
        load_dataset("npz", "train", tmp_path)
