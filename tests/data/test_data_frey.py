"""Frey Face: the packaged file, its fixed split, and the root override."""

from __future__ import annotations

import shutil
from importlib import resources

import numpy as np
import pytest
import scipy.io
import torch

from sigmavae.data import DataFormatError, DataNotFoundError, load_dataset
from sigmavae.data.frey import (
    FREY_BLOCK_FRAMES,
    FREY_SPLIT_SIZES,
    frey_split_indices,
    frey_split_sizes,
)


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


def _runs(indices: torch.Tensor) -> list[tuple[int, int]]:
    """Maximal runs of consecutive frame indices, as ``(first, last)`` pairs."""
    out: list[list[int]] = []
    for i in indices.tolist():
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return [(a, b) for a, b in out]


def _frames_next_to(split: torch.Tensor, other: torch.Tensor) -> int:
    """How many frames of ``split`` have frame index ``i - 1`` or ``i + 1`` in ``other``."""
    others = set(other.tolist())
    return sum(1 for i in split.tolist() if i - 1 in others or i + 1 in others)


def test_split_is_whole_blocks_of_consecutive_frames():
    idx = frey_split_indices()
    blocks_per_split = FREY_SPLIT_SIZES["test"] // FREY_BLOCK_FRAMES
    assert FREY_BLOCK_FRAMES * blocks_per_split == 200  # whole blocks give the sizes exactly
    for split in ("val", "test"):
        runs = _runs(idx[split])
        # each run is one or more whole blocks, aligned on the block grid
        for first, last in runs:
            assert first % FREY_BLOCK_FRAMES == 0 and (last + 1) % FREY_BLOCK_FRAMES == 0
        assert len(runs) <= blocks_per_split
        # only the first and last frame of a block can touch a train frame
        assert _frames_next_to(idx[split], idx["train"]) <= 2 * blocks_per_split
    # the 5-frame tail (1965 = 49 x 40 + 5) is train
    assert set(range(1960, 1965)) <= set(idx["train"].tolist())


def test_split_is_deterministic_and_pinned():
    a, b = frey_split_indices(), frey_split_indices()
    assert all(torch.equal(a[s], b[s]) for s in ("train", "val", "test"))
    assert all(a[s].dtype == torch.int64 for s in a)
    # the published test / val blocks (block k = frames 40k .. 40k + 39); a change here (e.g. a
    # torch.randperm change) would silently change everyone's test set
    blocks = {s: sorted({i // FREY_BLOCK_FRAMES for i in a[s].tolist()}) for s in ("val", "test")}
    assert blocks == {"test": [1, 9, 19, 34, 41], "val": [5, 25, 28, 33, 44]}


@pytest.mark.parametrize("n", [20, 50, 101, 500, 1964, 1966, 4000])
def test_split_of_other_frame_counts(n):
    idx = frey_split_indices(n)
    n_val, n_test = frey_split_sizes(n)
    assert (idx["val"].numel(), idx["test"].numel()) == (n_val, n_test)
    assert idx["train"].numel() == n - n_val - n_test >= 1
    every = torch.cat([idx["train"], idx["val"], idx["test"]]).sort().values
    assert torch.equal(every, torch.arange(n))  # disjoint and covering
    for v in idx.values():
        assert torch.all(v[1:] > v[:-1])  # video order
    # contiguous: the test split is at most ceil(n_test / L) runs (the last block may be cut)
    length = min(FREY_BLOCK_FRAMES, n_val, n_test)
    assert len(_runs(idx["test"])) <= -(-n_test // length)
    assert len(_runs(idx["val"])) <= -(-n_val // length)


def test_other_copy_is_split_in_blocks(tmp_path):
    ff = np.random.default_rng(1).integers(0, 256, size=(560, 500), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"ff": ff})
    frames = torch.from_numpy(ff.T.reshape(-1, 1, 28, 20).copy())
    parts = {s: load_dataset("frey", s, root=tmp_path) for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [398, 51, 51]
    # the test images are frames of at most 2 runs of consecutive frames (51 = 40 + 11)
    rows = {bytes(f.numpy().tobytes()): i for i, f in enumerate(frames)}
    test_rows = torch.tensor(sorted(rows[x.numpy().tobytes()] for x in parts["test"].images))
    assert len(_runs(test_rows)) <= 2


def _packaged_bytes() -> bytes:
    with resources.as_file(resources.files("sigmavae.data") / "assets" / "frey_rawface.mat") as p:
        return p.read_bytes()


@pytest.mark.parametrize(
    ("write", "pattern"),
    [
        (
            lambda p: p.write_bytes(b""),
            r"frey_rawface\.mat is empty \(0 bytes\); expected a MATLAB",
        ),
        (
            lambda p: p.write_bytes(_packaged_bytes()[:5000]),
            r"cannot read \S*frey_rawface\.mat as a MATLAB v5 \.mat file with variable ff",
        ),
        (
            lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)),
            r"cannot read \S*frey_rawface\.mat as a MATLAB v5 \.mat file with variable ff",
        ),
        (
            lambda p: scipy.io.savemat(p, {"ff": np.zeros((560, 2), np.uint8)}),
            r"frey_rawface\.mat holds only 2 frame\(s\); expected at least 3",
        ),
    ],
    ids=["empty", "truncated", "random-bytes", "two-frames"],
)
def test_bad_file_gives_one_clear_line(tmp_path, write, pattern):
    write(tmp_path / "frey_rawface.mat")
    with pytest.raises(DataFormatError, match=pattern) as info:
        load_dataset("frey", "train", root=tmp_path)
    assert "\n" not in str(info.value)


def test_no_test_frame_is_a_near_copy_of_train():
    """Measured on the shipped file: test (and val) frames are no closer to train than train
    frames are to each other. (With a per-frame permutation they were closer: test 10.7 vs
    train-train 11.2 RMS grey levels, and 195 of 200 test frames had a neighbouring frame in
    train.)"""
    frames = torch.from_numpy(_packaged_frames().reshape(1965, -1)).double()
    idx = frey_split_indices()
    train = frames[idx["train"]]

    def rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (len(a), len(b)) grey levels
        return torch.cdist(a, b) / a.shape[1] ** 0.5

    within = rms(train, train)
    within.fill_diagonal_(float("inf"))
    train_nn = within.min(1).values.median()
    for split in ("test", "val"):
        nearest = rms(frames[idx[split]], train).min(1).values.median()
        assert nearest >= train_nn, (split, float(nearest), float(train_nn))
