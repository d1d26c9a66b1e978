"""MNIST from torchvision's raw layout, checked against an independent IDX parser."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

import sigmavae.data.mnist as mnist_module
from sigmavae.data import (
    DataFormatError,
    DataNotFoundError,
    EmptyDatasetError,
    SplitError,
    load_dataset,
)


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


def _idx_payload(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array).tobytes()


_DIGITS = np.zeros((5, 28, 28), np.uint8)
_LABELS = np.arange(5, dtype=np.uint8)

# (case id, which file, payload before optional gzip, error, message pattern)
BAD_IDX = [
    ("empty", "images", None, DataFormatError, r"images-idx3-ubyte(\.gz)? is empty \(0 bytes\)"),
    (
        "truncated-header",
        "images",
        _idx_payload(_DIGITS)[:10],
        DataFormatError,
        r"not a valid IDX file of uint8 images.*the header is truncated \(10 of 16 bytes\)",
    ),
    (
        "truncated-pixels",
        "images",
        _idx_payload(_DIGITS)[:-100],
        DataFormatError,
        r"truncated: the header says 5 x 28 x 28 \(3920 bytes\) but 3820 bytes follow",
    ),
    (
        "trailing-bytes",
        "images",
        _idx_payload(_DIGITS) + b"\0" * 7,
        DataFormatError,
        r"7 unexpected bytes after the 5 x 28 x 28 values",
    ),
    (
        "random-bytes",
        "images",
        bytes(range(256)) * 4,
        DataFormatError,
        r"not a valid IDX file of uint8 images .*: magic number 66051 \(type code 0x02, 3 dims\)",
    ),
    (
        "labels-file-as-images",
        "images",
        _idx_payload(_LABELS),
        DataFormatError,
        r"magic number 2049 \(that is a labels file\)",
    ),
    (
        "int32-images",
        "images",
        _idx_payload(np.zeros((5, 28, 28), ">i4"), 0x0C),
        DataFormatError,
        r"magic number 3075 \(type code 0x0c, 3 dims\)",
    ),
    (
        "32x32-images",
        "images",
        _idx_payload(np.zeros((5, 32, 32), np.uint8)),
        DataFormatError,
        r"the images are 32 x 32 pixels; MNIST images are 28 x 28",
    ),
    (
        "no-images",
        "images",
        _idx_payload(np.zeros((0, 28, 28), np.uint8)),
        EmptyDatasetError,
        r"t10k-images-idx3-ubyte(\.gz)? holds no images",
    ),
    (
        "label-200",
        "labels",
        _idx_payload(np.full(5, 200, np.uint8)),
        DataFormatError,
        r"labels-idx1-ubyte(\.gz)? is not a valid IDX file of uint8 labels .*found 200",
    ),
]


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize(
    ("which", "payload", "error", "pattern"),
    [case[1:] for case in BAD_IDX],
    ids=[case[0] for case in BAD_IDX],
)
def test_bad_idx_files_give_one_clear_line(tmp_path, gz, which, payload, error, pattern):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    ext = ".gz" if gz else ""
    files = {
        "images": (raw / f"t10k-images-idx3-ubyte{ext}", _idx_payload(_DIGITS)),
        "labels": (raw / f"t10k-labels-idx1-ubyte{ext}", _idx_payload(_LABELS)),
    }
    for name, (path, good) in files.items():
        data = good if name != which else payload
        if data is None:
            path.write_bytes(b"")  # a 0-byte file, gzipped or not
        else:
            path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(error, match=pattern) as info:
        load_dataset("mnist", "test", root=tmp_path)
    assert "\n" not in str(info.value)


def test_gzip_that_is_not_gzip_or_holds_nothing(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_payload(_LABELS)))
    images = raw / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(b""))
    with pytest.raises(DataFormatError, match=r"idx3-ubyte\.gz .*: it decompresses to 0 bytes"):
        load_dataset("mnist", "test", root=tmp_path)
    images.write_bytes(gzip.compress(_idx_payload(_DIGITS))[:-30])
    with pytest.raises(DataFormatError, match=r"not a readable gzip file \(truncated or corrupt"):
        load_dataset("mnist", "test", root=tmp_path)
