"""video_folder: sequences from tiny generated PNG frame folders (and, where PyAV is installed,
from a losslessly encoded video file)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sigmavae.data.video_folder as video_folder
from sigmavae.data import (
    DataFormatError,
    DataNotFoundError,
    DataOptionError,
    ImageDataset,
    describe_dataset,
    load_dataset,
)
from sigmavae.data.transforms import resize


def _frames(seed: int, n: int, side: int = 16, grey: bool = False) -> np.ndarray:
    """``n`` random frames, uint8 ``(n, side, side, 3)`` (or ``(n, side, side)`` grey)."""
    shape = (n, side, side) if grey else (n, side, side, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _write(folder: Path, frames: np.ndarray, pattern: str = "frame{}.png") -> np.ndarray:
    """Write ``frames`` as ``frame1.png .. frame{n}.png`` (1-based, so 10 follows 9)."""
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames, 1):
        Image.fromarray(frame).save(folder / pattern.format(i))
    return frames


def _tensor(frames: np.ndarray) -> torch.Tensor:
    """``(T, H, W, C)`` -> ``(T, C, H, W)``."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


@pytest.fixture
def two_splits(tmp_path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """``train/`` with 3 sequences of 12 frames and ``test/`` with 2 (names sorted naturally:
    clip2 before clip10)."""
    content: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split, names in (("train", ["clip2", "clip10", "clip11"]), ("test", ["a", "b"])):
        for k, name in enumerate(names):
            content[split].append(_write(tmp_path / split / name, _frames(10 * k + len(split), 12)))
    return tmp_path, content


def test_frames_come_in_natural_order(two_splits):
    root, content = two_splits
    test = load_dataset("video_folder", "test", root)
    assert test.images.dtype == torch.uint8 and test.images.shape == (2, 12, 3, 16, 16)
    assert test.frames == 12 and test.name == f"video_folder:{root.name}"
    for got, frames in zip(test.images, content["test"], strict=True):
        assert torch.equal(got, _tensor(frames))  # frame1..frame12, so frame10 is the 10th
    train = load_dataset("video_folder", "train", root, val_fraction=0.0)
    assert torch.equal(train.images, torch.stack([_tensor(f) for f in content["train"]]))
    assert video_folder.natural_sorted([Path("f10"), Path("f9"), Path("F1")]) == [
        Path("F1"), Path("f9"), Path("f10")]


def test_the_container_holds_sequences(two_splits):
    root, content = two_splits
    test = load_dataset("video_folder", "test", root)
    assert test.is_sequence and test.data_shape == (12, 3, 16, 16)
    short = test.subset(1, frames=3)
    assert torch.equal(short.images, _tensor(content["test"][0][:3])[None])
    images = ImageDataset(images=test.images[:, 0].contiguous(), name="x", split="test")
    assert not images.is_sequence and images.frames is None
    with pytest.raises(DataOptionError, match=r"frames=2 needs sequences, but x holds images"):
        images.subset(1, frames=2)
    with pytest.raises(DataFormatError, match=r"\(N, C, H, W\) or, for sequences, "
                       r"\(N, T, C, H, W\)"):
        ImageDataset(images=test.images[None], name="x", split="test")


def test_windows_of_frames_and_stride(two_splits):
    root, content = two_splits
    first = load_dataset("video_folder", "test", root, frames=5)
    assert torch.equal(first.images, torch.stack([_tensor(f[:5]) for f in content["test"]]))
    windows = load_dataset("video_folder", "test", root, frames=5, stride=3)
    # starts 0, 3, 6 fit in 12 frames (9 would need frames 9..13)
    expected = [_tensor(f[s:s + 5]) for f in content["test"] for s in (0, 3, 6)]
    assert torch.equal(windows.images, torch.stack(expected))
    with pytest.raises(DataFormatError, match=r"sequence .*test/a has 12 frames, fewer than "
                       "frames=13"):
        load_dataset("video_folder", "test", root, frames=13)


def test_sequences_of_different_lengths(tmp_path):
    _write(tmp_path / "train" / "long", _frames(0, 8))
    _write(tmp_path / "train" / "short", _frames(1, 4))
    _write(tmp_path / "test" / "mid", _frames(2, 6))
    with pytest.raises(DataFormatError, match=r"different lengths \(.*short has 4 frames, "
                       r".*long has 8\); pass frames="):
        load_dataset("video_folder", "train", tmp_path, val_fraction=0.0)
    for split in ("train", "test"):
        assert load_dataset("video_folder", split, tmp_path, frames=4,
                            val_fraction=0.0).images.shape[1] == 4


def test_carved_splits_are_disjoint_sequences(tmp_path):
    marks = {}
    for k in range(10):  # every frame of sequence k is the constant 20 * k
        _write(tmp_path / f"seq{k}", np.full((3, 8, 8, 3), 20 * k, dtype=np.uint8))
        marks[20 * k] = k
    found = {}
    for split in ("train", "val", "test"):
        ds = load_dataset("video_folder", split, tmp_path, val_fraction=0.2, test_fraction=0.2,
                          stride=1, frames=2)
        found[split] = {marks[int(v)] for v in ds.images[:, 0, 0, 0, 0]}
        assert len(ds) == 2 * len(found[split])  # two windows per sequence, in one split
    assert [len(found[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert set().union(*found.values()) == set(range(10))


def test_image_size_crop_and_channels(tmp_path):
    wide = np.random.default_rng(3).integers(0, 256, (4, 12, 20, 3), dtype=np.uint8)
    _write(tmp_path / "train" / "wide", wide)
    grey = _write(tmp_path / "test" / "grey", _frames(4, 4, grey=True))
    resized = load_dataset("video_folder", "train", tmp_path, image_size=8, val_fraction=0.0)
    assert torch.equal(resized.images[0], resize(_tensor(wide), (8, 8)))
    cropped = load_dataset("video_folder", "train", tmp_path, image_size=8, crop=True,
                           val_fraction=0.0)
    assert torch.equal(cropped.images[0], resize(_tensor(wide)[..., 4:16].contiguous(), (8, 8)))
    # channels come from the first frame of the split unless given
    test = load_dataset("video_folder", "test", tmp_path)
    assert test.image_shape == (1, 16, 16) and torch.equal(test.images[0, :, 0],
                                                          torch.from_numpy(grey))
    rgb = load_dataset("video_folder", "test", tmp_path, channels=3)
    assert rgb.image_shape == (3, 16, 16) and torch.equal(rgb.images[0, :, 1],
                                                         torch.from_numpy(grey))


def test_frames_of_different_sizes_need_image_size(tmp_path):
    _write(tmp_path / "train" / "a", _frames(0, 3, side=16))
    _write(tmp_path / "train" / "b", _frames(1, 3, side=12))
    _write(tmp_path / "test" / "c", _frames(2, 3))
    with pytest.raises(DataFormatError, match="image_size"):
        load_dataset("video_folder", "train", tmp_path, val_fraction=0.0)
    ok = load_dataset("video_folder", "train", tmp_path, val_fraction=0.0, image_size=10)
    assert ok.images.shape == (2, 3, 3, 10, 10)


def test_decoded_frames_are_cached(two_splits, tmp_path_factory):
    root, _ = two_splits
    cache = tmp_path_factory.mktemp("vcache")
    first = load_dataset("video_folder", "test", root, cache_dir=cache)
    assert len(list(cache.glob("*.pt"))) == 1
    assert torch.equal(load_dataset("video_folder", "test", root, cache_dir=cache).images,
                       first.images)


def test_layout_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="is not a directory"):
        load_dataset("video_folder", "train", tmp_path / "nothing")
    with pytest.raises(DataOptionError, match="pass root="):
        load_dataset("video_folder", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"empty holds no frame images"):
        load_dataset("video_folder", "train", tmp_path)
    (tmp_path / "empty").rmdir()
    Image.fromarray(_frames(0, 1)[0]).save(tmp_path / "loose.png")
    with pytest.raises(DataFormatError, match=r"loose\.png lies directly in .*one sub-folder "
                       "per sequence"):
        load_dataset("video_folder", "train", tmp_path)
    with pytest.raises(DataOptionError, match="option frames must be a positive integer"):
        load_dataset("video_folder", "train", tmp_path, frames=0)
    with pytest.raises(DataOptionError, match="download=True is not supported"):
        load_dataset("video_folder", "train", tmp_path, download=True)
    text = describe_dataset("video_folder")
    assert "root" in text and ("Options: frames, stride, channels, crop, test_fraction, cache, "
                               "cache_dir.") in text


def test_video_file_without_pyav_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # "import av" raises ImportError: no PyAV
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / name).write_bytes(b"not really a video")
    with pytest.raises(DataFormatError, match=r"[abc]\.mp4 is a video file, and decoding it needs "
                       "PyAV: pip install av"):
        load_dataset("video_folder", "train", tmp_path, val_fraction=0.0, test_fraction=0.34)


def test_video_files_with_pyav(tmp_path):
    av = pytest.importorskip("av")
    clips = {}
    for k, name in enumerate(["clip1.mov", "clip2.mov"]):
        frames = _frames(k, 7)
        with av.open(str(tmp_path / name), mode="w") as out:  # lossless: the PNG codec
            stream = out.add_stream("png", rate=10)
            stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())
        clips[name] = frames
    _write(tmp_path / "clip3", _frames(9, 7))  # a frame folder beside the videos
    train = load_dataset("video_folder", "train", tmp_path, val_fraction=0.0, test_fraction=0.34,
                         frames=6)
    test = load_dataset("video_folder", "test", tmp_path, val_fraction=0.0, test_fraction=0.34,
                        frames=6)
    everything = torch.cat([train.images, test.images])
    assert everything.shape == (3, 6, 3, 16, 16)
    for frames in clips.values():
        assert any(torch.equal(seq, _tensor(frames[:6])) for seq in everything)
    broken = tmp_path / "broken" / "x.mp4"
    broken.parent.mkdir()
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(DataFormatError, match=r"cannot decode video file .*x\.mp4"):
        video_folder.read_video_file(broken, 3)
