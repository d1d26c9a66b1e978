"""Fixtures for the data-layer tests.

Real data is read from the project's shared folder ``../shared/data`` through the ``shared_file``
fixture of ``tests/conftest.py`` (tests that need it are skipped where it is absent). Every test
runs with the decode cache and the default data root pointed into a temporary directory, so
nothing is written to ``~/.cache``.
"""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _read_idx_gz(path: Path) -> np.ndarray:
    """Independent IDX reader (gzip + numpy.frombuffer), for checking the MNIST loader."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    assert magic >> 8 == 0x08, "unsigned byte IDX"
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    """Write an unsigned-byte IDX file (optionally gzipped) holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.fixture(scope="session")
def read_idx_gz():
    """An independent gzipped-IDX reader (gzip + numpy.frombuffer)."""
    return _read_idx_gz


@pytest.fixture(scope="session")
def write_idx():
    """``write_idx(path, uint8 array, gz=bool)`` writes an IDX file."""
    return _write_idx


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point the decode cache and the default data root into temporary directories."""
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("SIGMAVAE_DATA", str(tmp_path_factory.mktemp("data-root")))


@pytest.fixture(scope="session")
def cifar_jpeg_slice(tmp_path_factory: pytest.TempPathFactory,
                     shared_file: Callable[..., Path]) -> Path:
    """The first 30 JPEGs of each class of the shared CIFAR-10 (JPEG copy) test split.

    Returns a directory holding ``test/<class>/NNNN.jpg`` (300 files), extracted with tarfile into
    a temporary directory (never into the repository).
    """
    tar_path = shared_file("cifar10-jpeg", "test.tar")
    out = tmp_path_factory.mktemp("cifar-jpeg")
    per_class: dict[str, int] = {}
    with tarfile.open(tar_path) as tar:
        members = []
        for m in tar:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 3 or not m.name.endswith(".jpg"):
                continue
            if per_class.get(parts[-2], 0) < 30:
                per_class[parts[-2]] = per_class.get(parts[-2], 0) + 1
                members.append(m)
        tar.extractall(out, members=members, filter="data")
    assert sum(per_class.values()) == 300
    return out
