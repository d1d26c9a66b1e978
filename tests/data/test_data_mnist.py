"""MNIST from torchvision's raw layout, checked against an independent IDX parser."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

import sigmavae.data.mnist as mnist_module
from sigmavae.data import DataFormatError, DataNotFoundError, SplitError, load_dataset


def test_test_split_matches_independent_parser(mnist_test_root, read_idx_gz):
    raw = mnist_test_root / "MNIST" / "raw"
    expected_x = read_idx_gz(raw / "t10k-images-idx3-ubyte.gz")
    expected_y = read_idx_gz(raw / "t10k-labels-idx1-ubyte.gz")
    ds = load_dataset("mnist", "test", root=mnist_test_root)
    assert ds.name == "mnist" and ds.split == "test"
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (10000,)
    assert np.array_equal(ds.images[:, 0].numpy(), expected_x)
    assert np.array_equal(ds.labels.numpy(), expected_y.astype(np.int64))
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0


def test_extracted_files_give_the_same_tensor(mnist_test_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_test_root / "MNIST" / "raw" / f"{name}.gz") as src:
            (raw / name).write_bytes(src.read())
    plain = load_dataset("mnist", "test", root=tmp_path)
    packed = load_dataset("mnist", "test", root=mnist_test_root)
    assert torch.equal(plain.images, packed.images) and torch.equal(plain.labels, packed.labels)


def test_missing_train_files_say_where_and_how(mnist_test_root):
    with pytest.raises(DataNotFoundError, match=r"train-images-idx3-ubyte\[\.gz\]") as info:
        load_dataset("mnist", "train", root=mnist_test_root)
    message = str(info.value)
    assert str(mnist_test_root / "MNIST" / "raw") in message
    assert "download=True" in message


def test_default_root_comes_from_environment(tmp_path, monkeypatch, mnist_test_root):
    monkeypatch.setenv("SIGMAVAE_DATA", str(mnist_test_root))
    assert len(load_dataset("mnist", "test")) == 10000
    monkeypatch.setenv("SIGMAVAE_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):
        load_dataset("mnist", "test")


@pytest.fixture
def small_train_root(tmp_path, mnist_test_root, read_idx_gz, write_idx):
    """A train split made of the first 500 real test digits, in torchvision's layout."""
    raw_src = mnist_test_root / "MNIST" / "raw"
    x = read_idx_gz(raw_src / "t10k-images-idx3-ubyte.gz")[:500]
    y = read_idx_gz(raw_src / "t10k-labels-idx1-ubyte.gz")[:500]
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte.gz", x, gz=True)
    write_idx(raw / "train-labels-idx1-ubyte", y, gz=False)
    return tmp_path, x, y


def test_train_val_carving(small_train_root):
    root, x, y = small_train_root
    train = load_dataset("mnist", "train", root=root, val_fraction=0.1, seed=3)
    val = load_dataset("mnist", "val", root=root, val_fraction=0.1, seed=3)
    assert (len(train), len(val)) == (450, 50)
    # disjoint, and together exactly the official train split (matched by image bytes + label)
    rows = sorted((img.tobytes(), int(lab)) for img, lab in zip(x, y, strict=True))
    got = sorted(
        (i[0].numpy().tobytes(), int(lab))
        for d in (train, val)
        for i, lab in zip(d.images, d.labels, strict=True)
    )
    assert got == rows
    # deterministic for a seed; another seed carves another val split
    assert torch.equal(val.images, load_dataset("mnist", "val", root=root, seed=3).images)
    other = load_dataset("mnist", "val", root=root, seed=4)
    assert not torch.equal(val.images, other.images)
    assert len(load_dataset("mnist", "train", root=root, val_fraction=0.0)) == 500
    with pytest.raises(SplitError, match="val_fraction=0"):
        load_dataset("mnist", "val", root=root, val_fraction=0.0)


def test_image_size(mnist_test_root):
    ds = load_dataset("mnist", "test", root=mnist_test_root, image_size=32)
    assert ds.images.shape == (10000, 1, 32, 32) and ds.images.dtype == torch.uint8


def test_corrupt_idx_files(tmp_path, mnist_test_root, write_idx):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(mnist_test_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", raw)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage, not gzip")
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte\.gz is not a valid IDX"):
        load_dataset("mnist", "test", root=tmp_path)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((7, 28, 28), np.uint8), gz=True)
    with pytest.raises(DataFormatError, match=r"has 7 images but .* has 10000 labels"):
        load_dataset("mnist", "test", root=tmp_path)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((7, 28), np.uint8), gz=True)
    with pytest.raises(DataFormatError, match="not a valid IDX file of uint8 images"):
        load_dataset("mnist", "test", root=tmp_path)


def test_download_true_delegates_to_torchvision(tmp_path, monkeypatch, mnist_test_root):
    calls = []

    class FakeMNIST:  # stands in for torchvision's downloader: no network in tests
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raw = tmp_path / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for f in (mnist_test_root / "MNIST" / "raw").iterdir():
                shutil.copy(f, raw)

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    ds = load_dataset("mnist", "test", root=tmp_path, download=True)
    assert calls == [(str(tmp_path), False, True)] and len(ds) == 10000
    load_dataset("mnist", "test", root=tmp_path, download=True)  # files present: no second call
    assert len(calls) == 1
    assert mnist_module.raw_folder(tmp_path) == tmp_path / "MNIST" / "raw"
