"""Frey Face: the packaged file, its fixed split, and the root override."""

from __future__ import annotations

import shutil
from importlib import resources

import numpy as np
import pytest
import scipy.io
import torch

from sigmavae.data import DataFormatError, DataNotFoundError, load_dataset
from sigmavae.data.frey import FREY_SPLIT_SIZES


def _packaged_frames() -> np.ndarray:
    with resources.as_file(resources.files("sigmavae.data") / "assets" / "frey_rawface.mat") as p:
        ff = scipy.io.loadmat(str(p))["ff"]
    return ff.T.reshape(-1, 28, 20)


@pytest.fixture(scope="module")
def frey():
    return {s: load_dataset("frey", s) for s in ("train", "val", "test")}


def test_shapes_dtypes_sizes(frey):
    assert FREY_SPLIT_SIZES == {"train": 1565, "val": 200, "test": 200}
    for split, ds in frey.items():
        assert ds.name == "frey" and ds.split == split and ds.labels is None
        assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
        assert ds.images.shape == (FREY_SPLIT_SIZES[split], 1, 28, 20)
        assert ds.image_shape == (1, 28, 20)


def test_splits_partition_the_frames_exactly(frey):
    frames = _packaged_frames()
    assert frames.shape == (1965, 28, 20)
    assert frames.std() > 10  # real faces, not a constant
    # the three splits together are exactly the 1965 frames (as a multiset), pixel for pixel
    from_splits = sorted(img.numpy().tobytes() for ds in frey.values() for img in ds.images)
    assert from_splits == sorted(f.tobytes() for f in frames)
    # and they are disjoint as sets of frame indices
    from sigmavae.data.frey import frey_split_indices

    idx = frey_split_indices()
    sets = [set(idx[s].tolist()) for s in ("train", "val", "test")]
    assert sum(map(len, sets)) == 1965 and set().union(*sets) == set(range(1965))
    assert torch.equal(frey["val"].images[:, 0], torch.from_numpy(frames[idx["val"].numpy()]))


def test_split_is_fixed_and_ignores_seed(frey):
    again = load_dataset("frey", "test", seed=123, val_fraction=0.5)
    assert torch.equal(again.images, frey["test"].images)


def test_packaged_file_matches_shared_copy(shared_file):
    shared = shared_file("frey", "frey_rawface.mat")
    ff = scipy.io.loadmat(str(shared))["ff"]
    assert ff.dtype == np.uint8 and ff.shape == (560, 1965)
    assert np.array_equal(ff.T.reshape(-1, 28, 20), _packaged_frames())


def test_root_override_dir_and_file(tmp_path, frey):
    src = resources.files("sigmavae.data") / "assets" / "frey_rawface.mat"
    with resources.as_file(src) as p:
        shutil.copy(p, tmp_path / "frey_rawface.mat")
    by_dir = load_dataset("frey", "val", root=tmp_path)
    by_file = load_dataset("frey", "val", root=tmp_path / "frey_rawface.mat")
    assert torch.equal(by_dir.images, frey["val"].images)
    assert torch.equal(by_file.images, frey["val"].images)


def test_root_override_with_other_frames(tmp_path):
    rng = np.random.default_rng(0)
    ff = rng.integers(0, 256, size=(560, 1965), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"ff": ff})
    ds = load_dataset("frey", "train", root=tmp_path)
    frames = torch.from_numpy(ff.T.reshape(-1, 1, 28, 20).copy())
    idx = [
        int(np.flatnonzero((img.reshape(-1).numpy() == ff.T).all(1))[0]) for img in ds.images[:5]
    ]
    assert torch.equal(frames[idx], ds.images[:5])


def test_missing_and_malformed_root(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"frey_rawface\.mat.*root=None"):
        load_dataset("frey", "train", root=tmp_path)
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"faces": np.zeros((3, 3), np.uint8)})
    with pytest.raises(DataFormatError, match="no variable 'ff'"):
        load_dataset("frey", "train", root=tmp_path)
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"ff": np.zeros((100, 10), np.float64)})
    with pytest.raises(DataFormatError, match=r"expected uint8 \(560, n_frames\)"):
        load_dataset("frey", "train", root=tmp_path)
    (tmp_path / "frey_rawface.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataFormatError, match="cannot read"):
        load_dataset("frey", "train", root=tmp_path)


def test_image_size_resizes(frey):
    ds = load_dataset("frey", "test", image_size=16)
    assert ds.images.shape == (200, 1, 16, 16) and ds.images.dtype == torch.uint8
    # a resize of real faces keeps the mean brightness
    assert abs(ds.images.float().mean() - frey["test"].images.float().mean()) < 2
