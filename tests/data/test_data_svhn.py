"""SVHN on fixtures written with scipy.io.savemat in the published layout."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F

from sigmavae.data import DataFormatError, DataNotFoundError, EmptyDatasetError, load_dataset


def write_svhn(path, n, seed):
    """A .mat like train_32x32.mat: X uint8 (32, 32, 3, n), y uint8/double (n, 1) in 1..10."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
    y[0, 0] = 10  # digit 0 is stored as label 10
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


@pytest.fixture
def svhn_root(tmp_path):
    files = {
        "train": write_svhn(tmp_path / "train_32x32.mat", 40, 0),
        "test": write_svhn(tmp_path / "test_32x32.mat", 12, 1),
    }
    return tmp_path, files


def test_native_size_matches_published_layout(svhn_root):
    root, files = svhn_root
    ds = load_dataset("svhn", "test", root=root, image_size=32)
    x, y = files["test"]
    assert ds.images.shape == (12, 3, 32, 32) and ds.images.dtype == torch.uint8
    # image i is X[:, :, :, i] (rows, columns, RGB) moved to channels-first
    for i in range(12):
        assert np.array_equal(ds.images[i].permute(1, 2, 0).numpy(), x[:, :, :, i])
    assert ds.labels.tolist() == [int(v) % 10 for v in y[:, 0]]
    assert ds.labels[0] == 0 and ds.labels.dtype == torch.int64


def test_default_resize_to_28(svhn_root):
    root, files = svhn_root
    ds = load_dataset("svhn", "test", root=root)
    assert ds.images.shape == (12, 3, 28, 28) and ds.images.dtype == torch.uint8
    x = torch.from_numpy(files["test"][0]).permute(3, 2, 0, 1).float()
    ref = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    assert torch.equal(ds.images, ref.round().clamp(0, 255).to(torch.uint8))


def test_train_val_and_extra(svhn_root):
    root, files = svhn_root
    train = load_dataset("svhn", "train", root=root, image_size=32, val_fraction=0.25)
    val = load_dataset("svhn", "val", root=root, image_size=32, val_fraction=0.25)
    assert (len(train), len(val)) == (30, 10)
    every = {img.numpy().tobytes() for img in torch.cat([train.images, val.images])}
    expected = {
        np.ascontiguousarray(files["train"][0][..., i].transpose(2, 0, 1)).tobytes()
        for i in range(40)
    }
    assert every == expected
    with pytest.raises(DataNotFoundError, match=r"extra_32x32\.mat"):
        load_dataset("svhn", "train", root=root, extra=True)
    xe, _ = write_svhn(root / "extra_32x32.mat", 5, 2)
    with_extra = load_dataset(
        "svhn", "train", root=root, image_size=32, extra=True, val_fraction=0.25
    )
    assert len(with_extra) == 35
    assert torch.equal(with_extra.images[:30], train.images)
    assert np.array_equal(
        with_extra.images[30:].permute(0, 2, 3, 1).numpy(), xe.transpose(3, 0, 1, 2)
    )
    # val does not change when extra is used
    assert torch.equal(
        load_dataset("svhn", "val", root=root, image_size=32, extra=True, val_fraction=0.25).images,
        val.images,
    )


def test_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"test_32x32\.mat.*download=True"):
        load_dataset("svhn", "test", root=tmp_path)
    scipy.io.savemat(
        tmp_path / "test_32x32.mat",
        {"X": np.zeros((32, 32, 3, 2), np.float32), "y": np.ones((2, 1))},
    )
    with pytest.raises(DataFormatError, match=r"expected uint8 \(32, 32, 3, N\)"):
        load_dataset("svhn", "test", root=tmp_path)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DataFormatError, match="no variable 'y'"):
        load_dataset("svhn", "test", root=tmp_path)
    scipy.io.savemat(
        tmp_path / "test_32x32.mat",
        {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.zeros((2, 1))},
    )
    with pytest.raises(DataFormatError, match=r"must be 1\.\.10"):
        load_dataset("svhn", "test", root=tmp_path)
    write_svhn(tmp_path / "test_32x32.mat", 2, 0)
    with pytest.raises(DataFormatError, match="does not match the published MD5"):
        load_dataset("svhn", "test", root=tmp_path, check_md5=True)


def _svhn_truncated(path):
    write_svhn(path, 50, 0)
    path.write_bytes(path.read_bytes()[:20000])


_X = np.zeros((32, 32, 3, 3), np.uint8)


@pytest.mark.parametrize(
    ("write", "error", "pattern"),
    [
        (lambda p: p.write_bytes(b""), DataFormatError, r"test_32x32\.mat is empty \(0 bytes\)"),
        (
            _svhn_truncated,
            DataFormatError,
            r"cannot read \S*test_32x32\.mat as a MATLAB v5 \.mat file with X uint8",
        ),
        (
            lambda p: scipy.io.savemat(
                p, {"X": np.zeros((28, 28, 3, 3), np.uint8), "y": np.ones((3, 1))}
            ),
            DataFormatError,
            r"X in \S*test_32x32\.mat is uint8 \(28, 28, 3, 3\); expected uint8 \(32, 32, 3, N\)",
        ),
        (
            lambda p: scipy.io.savemat(p, {"X": _X, "y": np.full((3, 1), 1.5)}),
            DataFormatError,
            r"labels y in \S*test_32x32\.mat must be whole numbers 1\.\.10",
        ),
        (
            lambda p: scipy.io.savemat(p, {"X": _X, "y": "abc"}),
            DataFormatError,
            r"y in \S*test_32x32\.mat is <U3 \(1,\); expected numeric labels",
        ),
        (
            lambda p: scipy.io.savemat(
                p, {"X": _X, "y": np.array([[1], ["a"], [2]], dtype=object)}
            ),
            DataFormatError,
            r"y in \S*test_32x32\.mat is object \(3, 1\); expected numeric labels",
        ),
        (
            lambda p: scipy.io.savemat(
                p, {"X": np.zeros((32, 32, 3, 0), np.uint8), "y": np.ones((0, 1))}
            ),
            EmptyDatasetError,
            r"X in \S*test_32x32\.mat holds no images",
        ),
    ],
    ids=["empty", "truncated", "28x28", "y-fractional", "y-text", "y-cell", "no-images"],
)
def test_bad_files_give_one_clear_line(tmp_path, write, error, pattern):
    write(tmp_path / "test_32x32.mat")
    with pytest.raises(error, match=pattern) as info:
        load_dataset("svhn", "test", root=tmp_path)
    assert "\n" not in str(info.value)
