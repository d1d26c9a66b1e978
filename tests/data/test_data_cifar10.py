"""CIFAR-10 python batches, on fixtures written in exactly the published pickle format."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from sigmavae.data import DataFormatError, DataNotFoundError, EmptyDatasetError, load_dataset

PER_BATCH = 6


def write_batch(path, rng, n):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    batch = {
        b"batch_label": b"fixture",
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)  # the official files are protocol-2 pickles
    return data, labels


@pytest.fixture
def cifar_root(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    train = [write_batch(folder / f"data_batch_{i}", rng, PER_BATCH) for i in range(1, 6)]
    test = write_batch(folder / "test_batch", rng, PER_BATCH)
    meta = {b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": PER_BATCH}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return tmp_path, train, test


def test_test_batch_pixels_and_labels(cifar_root):
    root, _, (data, labels) = cifar_root
    ds = load_dataset("cifar10", "test", root=root)
    assert ds.images.shape == (PER_BATCH, 3, 32, 32) and ds.images.dtype == torch.uint8
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32
    for i in range(PER_BATCH):
        assert np.array_equal(ds.images[i, 0].numpy().reshape(-1), data[i, :1024])
        assert np.array_equal(ds.images[i, 2, 31].numpy(), data[i, 3072 - 32 :])
    assert ds.labels.tolist() == labels and ds.labels.dtype == torch.int64


def test_train_val_are_the_five_batches(cifar_root):
    root, train_batches, _ = cifar_root
    train = load_dataset("cifar10", "train", root=root, val_fraction=0.2, seed=1)
    val = load_dataset("cifar10", "val", root=root, val_fraction=0.2, seed=1)
    assert (len(train), len(val)) == (24, 6)
    expected = sorted(
        d.tobytes() + bytes([lab])
        for data, labels in train_batches
        for d, lab in zip(data, labels, strict=True)
    )
    got = sorted(
        img.numpy().tobytes() + bytes([int(lab)])
        for ds in (train, val)
        for img, lab in zip(ds.images, ds.labels, strict=True)
    )
    assert got == expected


def test_protocol_5_pickles_also_load(cifar_root):
    root, _, (data, labels) = cifar_root
    batch = {b"labels": labels, b"data": data}
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=5))
    assert np.array_equal(load_dataset("cifar10", "test", root=root).images.reshape(-1, 3072), data)


def test_image_size(cifar_root):
    ds = load_dataset("cifar10", "test", root=cifar_root[0], image_size=16)
    assert ds.images.shape == (PER_BATCH, 3, 16, 16)


def test_missing_files_listed(cifar_root):
    root = cifar_root[0]
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataNotFoundError, match=r"data_batch_3.*cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", "train", root=root)
    with pytest.raises(DataNotFoundError, match="test_batch"):
        load_dataset("cifar10", "test", root=root / "nowhere")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_pickles_cannot_run_code(cifar_root):
    root = cifar_root[0]
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataFormatError, match=r"not allowed in a CIFAR batch"):
        load_dataset("cifar10", "test", root=root)


def test_malformed_batches(cifar_root):
    root = cifar_root[0]
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataFormatError, match=r"expected uint8 \(n, 3072\)"):
        load_dataset("cifar10", "test", root=root)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(DataFormatError, match="must be 2 integers"):
        load_dataset("cifar10", "test", root=root)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataFormatError, match="b'data' and b'labels'"):
        load_dataset("cifar10", "test", root=root)
    path.write_bytes(b"\x80\x02truncated")
    with pytest.raises(DataFormatError, match=r"cannot read .*test_batch"):
        load_dataset("cifar10", "test", root=root)
    write_batch(path, np.random.default_rng(0), 2)
    with pytest.raises(DataFormatError, match="published MD5"):
        load_dataset("cifar10", "test", root=root, check_md5=True)


def _pickled(batch) -> bytes:
    return pickle.dumps(batch, protocol=2)


@pytest.mark.parametrize(
    ("content", "error", "pattern"),
    [
        (
            b"",
            DataFormatError,
            r"test_batch is empty \(0 bytes\); expected a CIFAR-10 python batch",
        ),
        (
            _pickled({b"data": np.zeros((2, 3072), np.uint8), b"labels": [[0], [1, 2]]}),
            DataFormatError,
            r"b'labels' in \S*test_batch is not a flat list of integers",
        ),
        (
            _pickled({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}),
            DataFormatError,
            r"b'labels' in \S*test_batch must be 2 integers, got <U1 \(2,\)",
        ),
        (
            _pickled({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}),
            DataFormatError,
            r"labels in \S*test_batch must be 0\.\.9, got 0\.\.12",
        ),
        (
            _pickled({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}),
            EmptyDatasetError,
            r"b'data' in \S*test_batch holds no images",
        ),
    ],
    ids=["empty", "ragged-labels", "text-labels", "label-12", "no-images"],
)
def test_bad_batches_give_one_clear_line(cifar_root, content, error, pattern):
    root = cifar_root[0]
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    with pytest.raises(error, match=pattern) as info:
        load_dataset("cifar10", "test", root=root)
    assert "\n" not in str(info.value)
