"""BAIR robot pushing from tiny fixtures in both published layouts: the original TFRecords
(tf.train.Example records written by the hand encoder of ``test_data_tfrecord.py``, with
tensorboard's masked CRC-32C) and the per-frame PNGs of SVG's conversion script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_tfrecord import bytes_feature, encode_example, float_feature, write_tfrecord

import sigmavae.data.bair as bair
from sigmavae.data import (
    DataFormatError,
    DataNotFoundError,
    DataOptionError,
    ImageDataset,
    SplitError,
    describe_dataset,
    load_dataset,
)
from sigmavae.data.transforms import resize

#: record file -> sequences in it; natural order puts 256 before 1024 (lexical order would not)
TRAIN_FILES = {"traj_1024_to_1279": 2, "traj_256_to_511": 3}
TEST_FILES = {"traj_0_to_255": 2}
FRAMES = bair.SEQUENCE_FRAMES


def _content(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"video": rng.integers(0, 256, (FRAMES, 64, 64, 3), dtype=np.uint8),
            "main": rng.integers(0, 256, (FRAMES, 64, 64, 3), dtype=np.uint8),
            "action": rng.normal(size=(FRAMES, 4)).astype(np.float32),
            "endeffector": rng.normal(size=(FRAMES, 3)).astype(np.float32)}


def _record(c: dict, drop: str | None = None) -> bytes:
    features = {}
    for i in range(FRAMES):  # the published feature names, frame by frame
        features[f"{i}/action"] = float_feature(*c["action"][i].tolist())
        features[f"{i}/endeffector_pos"] = float_feature(*c["endeffector"][i].tolist())
        features[f"{i}/image_aux1/encoded"] = bytes_feature(c["video"][i].tobytes())
        features[f"{i}/image_main/encoded"] = bytes_feature(c["main"][i].tobytes())
    features.pop(drop, None)
    return encode_example(features)


@pytest.fixture(scope="module")
def content() -> dict[str, list[dict]]:
    """The sequences of each split in natural file order: what the loader must return."""
    out: dict[str, list[dict]] = {"train": [], "test": []}
    seed = 0
    for split, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        for name in sorted(files, key=lambda n: int(n.split("_")[1])):
            for _ in range(files[name]):
                out[split].append({"file": name, **_content(seed)})
                seed += 1
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory, content) -> Path:
    """``<root>/softmotion30_44k/{train,test}/*.tfrecords`` as published."""
    root = tmp_path_factory.mktemp("bair-release")
    for split, seqs in content.items():
        names = dict.fromkeys(s["file"] for s in seqs)
        for name in names:
            write_tfrecord(root / "softmotion30_44k" / split / f"{name}.tfrecords",
                           [_record(s) for s in seqs if s["file"] == name])
    return root


@pytest.fixture(scope="module")
def processed(tmp_path_factory, content) -> Path:
    """``<root>/processed_data/{train,test}/<file>/<k>/<i>.png`` as SVG's convert_bair.py writes
    (``k`` counts from 1 within each file)."""
    root = tmp_path_factory.mktemp("bair-png")
    for split, seqs in content.items():
        counter: dict[str, int] = {}
        for s in seqs:
            counter[s["file"]] = k = counter.get(s["file"], 0) + 1
            folder = root / "processed_data" / split / s["file"] / str(k)
            folder.mkdir(parents=True)
            for i in range(FRAMES):
                Image.fromarray(s["video"][i]).save(folder / f"{i}.png")
    return root


def _expected(seqs: list[dict], frames: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([s["video"][:frames] for s in seqs])).permute(0, 1, 4, 2, 3)


def test_tfrecords_give_the_sequences_in_order_with_conditions(release, content):
    test = load_dataset("bair", "test", release, frames=30)
    assert test.images.dtype == torch.uint8 and test.images.shape == (2, 30, 3, 64, 64)
    assert test.frames == 30 and test.image_shape == (3, 64, 64) and test.name == "bair"
    assert torch.equal(test.images, _expected(content["test"], 30))
    cond = np.concatenate([np.stack([s["action"] for s in content["test"]]),
                           np.stack([s["endeffector"] for s in content["test"]])], axis=2)
    assert test.conditions is not None and test.conditions.dtype == torch.float32
    assert torch.equal(test.conditions, torch.from_numpy(cond))  # action (4), endeffector (3)
    assert len(bair.CONDITION_NAMES) == 7
    default = load_dataset("bair", "test", release)  # frames=12: the first 12 of each
    assert torch.equal(default.images, _expected(content["test"], 12))
    assert default.conditions.shape == (2, 12, 7)


def test_val_is_carved_from_train_and_both_are_memory_mapped(release, content, tmp_path):
    kw = {"frames": 4, "val_fraction": 0.4, "seed": 3, "cache_dir": tmp_path}
    train = load_dataset("bair", "train", release, **kw)
    val = load_dataset("bair", "val", release, **kw)
    assert (len(train), len(val)) == (3, 2)
    everything = _expected(content["train"], 4)  # 5 sequences, traj_256 file first
    val_index = torch.randperm(5, generator=torch.Generator().manual_seed(3))[:2].sort().values
    train_index = torch.tensor([i for i in range(5) if i not in val_index.tolist()])
    assert torch.equal(val.images, everything[val_index])
    assert torch.equal(train.images, everything[train_index])
    # one cache file holds train then val, and the tensors are views of it
    cached = sorted(tmp_path.glob("bair-train-*.npy"))
    assert [p.name.endswith(".conditions.npy") for p in cached] == [True, False]
    on_disk = np.load(cached[1])
    assert on_disk.shape == (5, 4, 3, 64, 64)
    assert torch.equal(torch.from_numpy(on_disk), torch.cat([train.images, val.images]))
    maps = Path("/proc/self/maps")
    if maps.is_file():  # Linux: the tensors' memory is a mapping of the cache file, not a copy
        spans = [tuple(int(a, 16) for a in line.split()[0].split("-"))
                 for line in maps.read_text().splitlines() if line.endswith(str(cached[1]))]
        for ds in (train, val):
            assert any(lo <= ds.images.data_ptr() < hi for lo, hi in spans)
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing left over
    assert load_dataset("bair", "train", release, frames=4, val_fraction=0.0,
                        cache_dir=tmp_path).images.shape[0] == 5
    with pytest.raises(SplitError, match="val_fraction=0"):
        load_dataset("bair", "val", release, val_fraction=0.0, cache_dir=tmp_path)


def test_cached_split_is_read_back_without_decoding(release, tmp_path, monkeypatch):
    first = load_dataset("bair", "test", release, frames=6, cache_dir=tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(bair, "read_tfrecord_sequences", refuse)
    again = load_dataset("bair", "test", release, frames=6, cache_dir=tmp_path)
    assert torch.equal(first.images, again.images)
    assert torch.equal(first.conditions, again.conditions)
    again.images[0, 0, 0, 0, 0] = 1 + int(again.images[0, 0, 0, 0, 0]) % 255  # copy-on-write
    assert torch.equal(load_dataset("bair", "test", release, frames=6,
                                    cache_dir=tmp_path).images, first.images)
    # a damaged cache file is reported and rebuilt
    monkeypatch.undo()
    image_file = next(p for p in tmp_path.glob("bair-test-6f-*.npy")
                      if not p.name.endswith(".conditions.npy"))
    damaged = image_file.read_bytes()[:200]
    image_file.unlink()  # a new file: truncating the mapped one in place would pull its pages
    image_file.write_bytes(damaged)
    with pytest.warns(UserWarning, match="ignoring unusable cache file"):
        rebuilt = load_dataset("bair", "test", release, frames=6, cache_dir=tmp_path)
    assert torch.equal(rebuilt.images, first.images)


def test_no_cache_writes_nothing(release, tmp_path, monkeypatch):
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path))
    ds = load_dataset("bair", "test", release, frames=3, cache=False)
    assert ds.images.shape == (2, 3, 3, 64, 64) and not any(tmp_path.iterdir())


def test_png_layout_gives_identical_tensors(release, processed):
    for split in ("train", "val", "test"):
        a = load_dataset("bair", split, release, frames=12, val_fraction=0.2)
        b = load_dataset("bair", split, processed, frames=12, val_fraction=0.2)
        assert torch.equal(a.images, b.images), split
        assert b.conditions is None and a.conditions is not None
    # root may be the layout folder itself
    assert torch.equal(load_dataset("bair", "test", processed / "processed_data").images,
                       load_dataset("bair", "test", release / "softmotion30_44k").images)


def test_both_layouts_under_one_root(release, processed, tmp_path):
    (tmp_path / "softmotion30_44k").symlink_to(release / "softmotion30_44k")
    (tmp_path / "processed_data").symlink_to(processed / "processed_data")
    assert load_dataset("bair", "test", tmp_path).conditions is not None  # auto: the TFRecords
    assert load_dataset("bair", "test", tmp_path, layout="png").conditions is None
    with pytest.raises(DataOptionError, match="layout must be one of auto, tfrecord, png"):
        load_dataset("bair", "test", tmp_path, layout="jpeg")


def test_image_size_resizes_every_frame(release, content):
    small = load_dataset("bair", "test", release, frames=5, image_size=32)
    native = _expected(content["test"], 5)
    reference = resize(native.reshape(-1, 3, 64, 64), (32, 32)).reshape(2, 5, 3, 32, 32)
    assert small.images.shape == (2, 5, 3, 32, 32) and torch.equal(small.images, reference)


def _copy_test_file(release: Path, tmp_path: Path) -> Path:
    target = tmp_path / "softmotion30_44k" / "test" / "traj_0_to_255.tfrecords"
    target.parent.mkdir(parents=True)
    (tmp_path / "softmotion30_44k" / "train").mkdir()
    target.write_bytes((release / "softmotion30_44k" / "test" / target.name).read_bytes())
    return target


def test_corrupt_crc_names_the_file(release, tmp_path):
    path = _copy_test_file(release, tmp_path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) - 100] ^= 0x40  # inside the last record's data
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"traj_0_to_255\.tfrecords: record 1 .*corrupt "
                       "TFRecord file: the CRC") as info:
        load_dataset("bair", "test", tmp_path, cache=False)
    assert "\n" not in str(info.value)
    assert load_dataset("bair", "test", tmp_path, cache=False, check_crc=False).images.shape[0] == 2


def test_truncated_file_names_the_file(release, tmp_path):
    path = _copy_test_file(release, tmp_path)
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(DataFormatError, match=r"traj_0_to_255\.tfrecords: record 1 .*truncated"):
        load_dataset("bair", "test", tmp_path)


@pytest.mark.parametrize(("drop", "pattern"), [
    ("7/image_aux1/encoded", r"record 0: feature 7/image_aux1/encoded is missing"),
    ("2/action", r"record 0: feature 2/action is missing"),
])
def test_missing_feature_names_file_record_and_feature(tmp_path, drop, pattern):
    path = tmp_path / "softmotion30_44k" / "test" / "traj_0_to_255.tfrecords"
    write_tfrecord(path, [_record(_content(9), drop=drop)])
    with pytest.raises(DataFormatError, match=rf"traj_0_to_255\.tfrecords: {pattern}"):
        load_dataset("bair", "test", tmp_path, frames=10, cache=False)


def test_encoded_image_instead_of_raw_bytes(tmp_path):
    data = encode_example({f"{i}/image_aux1/encoded": bytes_feature(b"\x89PNG" + bytes(50))
                           for i in range(FRAMES)})
    write_tfrecord(tmp_path / "softmotion30_44k" / "test" / "traj_0_to_255.tfrecords", [data])
    with pytest.raises(DataFormatError, match="holds 54 bytes; expected 12288"):
        load_dataset("bair", "test", tmp_path, cache=False)


def test_png_sequence_missing_a_frame(processed, tmp_path):
    seq = tmp_path / "processed_data" / "test" / "traj_0_to_255" / "1"
    seq.mkdir(parents=True)
    for i in range(12):
        if i != 8:
            (seq / f"{i}.png").write_bytes((processed / "processed_data" / "test" / "traj_0_to_255"
                                            / "1" / f"{i}.png").read_bytes())
    with pytest.raises(DataFormatError, match=r"traj_0_to_255/1 lacks frame\(s\) 8\.png"):
        load_dataset("bair", "test", tmp_path, frames=12)


def test_missing_root_and_bad_options(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"bair: no softmotion30_44k/.* or "
                       r"processed_data/.* under .*bair_robot_pushing_dataset_v0\.tar"):
        load_dataset("bair", "train", tmp_path)
    with pytest.raises(DataOptionError, match=r"frames must be an integer in 1\.\.30"):
        load_dataset("bair", "train", tmp_path, frames=31)
    with pytest.raises(DataOptionError, match="option frames must be an integer"):
        load_dataset("bair", "train", tmp_path, frames="all")
    with pytest.raises(DataOptionError, match="download=True is not supported"):
        load_dataset("bair", "train", tmp_path, download=True)
    text = describe_dataset("bair")
    assert "root" in text and "Options: frames, layout, check_crc, cache, cache_dir." in text


def test_subset_keeps_conditions_aligned(release):
    ds = load_dataset("bair", "test", release, frames=10)
    assert "frames=10" in repr(ds) and "conditions=(7,)" in repr(ds)
    sub = ds.subset(1, frames=4)
    assert torch.equal(sub.images, ds.images[:1, :4]) and sub.images.is_contiguous()
    assert torch.equal(sub.conditions, ds.conditions[:1, :4])
    assert len(ds.subset(5)) == 2 and ds.subset(5).conditions.shape == (2, 10, 7)
    with pytest.raises(DataOptionError, match=r"frames must be an integer in 1\.\.10"):
        ds.subset(1, frames=11)
    with pytest.raises(DataFormatError, match=r"conditions must be a \(N, T, K\) tensor"):
        ImageDataset(images=ds.images, name="x", split="test", conditions=ds.conditions[:1])


def test_cache_folder_that_cannot_hold_the_file(release, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataOptionError, match=r"cannot write a cache file in .*a-file/bair.*"
                       "pass cache_dir="):
        load_dataset("bair", "test", release, cache_dir=blocker / "bair")

    class Usage:
        free = 1 << 20

    monkeypatch.setattr(bair.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(DataOptionError, match=r"the cache file needs 0\.3 MiB but .* has only "
                       r"1\.0 MiB free; pass cache_dir="):
        load_dataset("bair", "test", release, cache_dir=tmp_path / "full")
    assert not list((tmp_path / "full").iterdir())  # no temporary file left behind
