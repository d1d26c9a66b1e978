"""Image folders: decoding, splits, corrupt files, the decode cache."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import sigmavae.data.decode as decode_module
from sigmavae.data import (
    CorruptImageError,
    CorruptImageWarning,
    DataError,
    DataFormatError,
    DataNotFoundError,
    DataOptionError,
    EmptyDatasetError,
    load_dataset,
)
from sigmavae.data.folder import list_images


def write_pngs(folder: Path, n: int, seed: int, size=(6, 5), mode="RGB") -> dict[str, np.ndarray]:
    """``n`` PNGs with random pixels (lossless, so exact comparisons hold)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        shape = (size[0], size[1], 3) if mode == "RGB" else size
        arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(arr, mode).save(path)
        out[str(path)] = arr
    return out


def decode_reference(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


def test_cifar_jpeg_slice_pixels(cifar_jpeg_slice):
    root = cifar_jpeg_slice / "test"
    parts = [load_dataset("folder", s, root, labels=True) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [243, 27, 30]
    for p in parts:
        assert p.name == "folder:test" and p.image_shape == (3, 32, 32)
        assert p.images.dtype == torch.uint8 and p.labels.dtype == torch.int64
    # every split together holds exactly the 300 files, decoded like Pillow decodes them
    files = list_images(root)
    assert len(files) == 300 and files == sorted(
        files, key=lambda f: f.relative_to(root).as_posix()
    )
    expected = sorted(decode_reference(f).tobytes() + bytes([i // 30]) for i, f in enumerate(files))
    got = sorted(
        img.numpy().tobytes() + bytes([int(lab)])
        for p in parts
        for img, lab in zip(p.images, p.labels, strict=True)
    )
    assert got == expected
    # class labels follow the sorted class folder names
    classes = sorted(d.name for d in root.iterdir())
    assert classes[0] == "airplane" and set(parts[2].labels.tolist()) <= set(range(10))


def test_carved_splits_are_deterministic_and_test_ignores_seed(cifar_jpeg_slice):
    root = cifar_jpeg_slice / "test"
    test_a = load_dataset("folder", "test", root, seed=0)
    test_b = load_dataset("folder", "test", root, seed=7)
    assert torch.equal(test_a.images, test_b.images)  # test carving uses a fixed seed
    val_a = load_dataset("folder", "val", root, seed=0)
    val_b = load_dataset("folder", "val", root, seed=7)
    assert not torch.equal(val_a.images, val_b.images)
    assert torch.equal(val_a.images, load_dataset("folder", "val", root, seed=0).images)
    small = load_dataset("folder", "train", root, image_size=16, crop=True)
    assert small.images.shape == (243, 3, 16, 16)


def test_split_subfolders_are_used(tmp_path):
    train = write_pngs(tmp_path / "train" / "a", 8, 0)
    write_pngs(tmp_path / "train" / "b", 2, 1)
    test = write_pngs(tmp_path / "test" / "b", 3, 2)
    ds = load_dataset("folder", "test", tmp_path, labels=True)
    assert len(ds) == 3 and ds.labels.tolist() == [1, 1, 1]  # class 'b' is 1 in every split
    for img, arr in zip(ds.images, test.values(), strict=True):
        assert np.array_equal(img.permute(1, 2, 0).numpy(), arr)
    tr = load_dataset("folder", "train", tmp_path, val_fraction=0.2, labels=True)
    va = load_dataset("folder", "val", tmp_path, val_fraction=0.2, labels=True)
    assert (len(tr), len(va)) == (8, 2)
    together = sorted(x.numpy().tobytes() for x in torch.cat([tr.images, va.images]))
    assert len(set(together)) == 10 and set(together) >= {
        a.transpose(2, 0, 1).tobytes() for a in train.values()
    }
    write_pngs(tmp_path / "val" / "a", 4, 3)
    assert len(load_dataset("folder", "val", tmp_path)) == 4
    assert len(load_dataset("folder", "train", tmp_path)) == 10


def test_shuffle_mixes_a_class_sorted_tree_in_a_fixed_order(tmp_path):
    for k, name in enumerate("abcd"):
        write_pngs(tmp_path / "train" / name, 10, k)
        write_pngs(tmp_path / "test" / name, 5, 10 + k)
    for split in ("train", "val", "test"):
        plain = load_dataset("folder", split, tmp_path, labels=True, val_fraction=0.2)
        mixed = load_dataset("folder", split, tmp_path, labels=True, val_fraction=0.2,
                             shuffle=True)
        again = load_dataset("folder", split, tmp_path, labels=True, val_fraction=0.2,
                             shuffle=True, seed=5)
        # the same images and labels, in another order
        assert sorted(x.numpy().tobytes() for x in plain.images) == sorted(
            x.numpy().tobytes() for x in mixed.images)
        pairs = {(x.numpy().tobytes(), int(y)) for x, y in zip(plain.images, plain.labels,
                                                               strict=True)}
        assert pairs == {(x.numpy().tobytes(), int(y)) for x, y in zip(mixed.images,
                                                                      mixed.labels, strict=True)}
        assert plain.labels.tolist() == sorted(plain.labels.tolist())  # sorted by class
        assert mixed.labels.tolist() != plain.labels.tolist()
        if split == "test":  # the order does not depend on the run seed
            assert torch.equal(mixed.images, again.images)
    first = load_dataset("folder", "train", tmp_path, labels=True, shuffle=True).labels[:8]
    assert len(set(first.tolist())) >= 3  # a first-N subset holds several classes


def test_grey_and_channel_options(tmp_path):
    arrays = write_pngs(tmp_path, 10, 0, mode="L")
    ds = load_dataset("folder", "train", tmp_path, test_fraction=0.2, val_fraction=0.25)
    assert ds.image_shape == (1, 6, 5) and len(ds) == 6
    assert {x.numpy().tobytes() for x in ds.images} <= {a.tobytes() for a in arrays.values()}
    rgb = load_dataset(
        "folder", "train", tmp_path, channels=3, test_fraction=0.2, val_fraction=0.25
    )
    assert rgb.image_shape == (3, 6, 5)
    assert torch.equal(rgb.images[:, 0], ds.images[:, 0])
    with pytest.raises(DataOptionError, match="channels"):
        load_dataset("folder", "train", tmp_path, channels=2)


def test_mixed_sizes_need_image_size(tmp_path):
    write_pngs(tmp_path, 3, 0, size=(6, 5))
    Image.fromarray(np.zeros((9, 4, 3), np.uint8)).save(tmp_path / "z_odd.png")
    with pytest.raises(DataFormatError, match=r"z_odd\.png gives 9x4 pixels.*image_size"):
        load_dataset("folder", "test", tmp_path, test_fraction=0.5)
    ok = load_dataset("folder", "test", tmp_path, test_fraction=0.5, image_size=4, crop=True)
    assert ok.images.shape == (2, 3, 4, 4)


def test_errors_for_missing_and_empty(tmp_path):
    with pytest.raises(DataNotFoundError, match="is not a directory"):
        load_dataset("folder", "train", tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(EmptyDatasetError, match="no image files"):
        load_dataset("folder", "train", tmp_path)
    with pytest.raises(DataOptionError, match="root="):
        load_dataset("folder", "train")
    write_pngs(tmp_path / "flat", 4, 0)
    with pytest.raises(DataFormatError, match="class sub-folder"):
        load_dataset("folder", "train", tmp_path / "flat", labels=True)


@pytest.fixture
def folder_with_corrupt(tmp_path):
    arrays = write_pngs(tmp_path, 12, 0)
    bad = tmp_path / "img_005.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    (tmp_path / "img_007.png").write_bytes(b"this is not an image")
    return tmp_path, arrays


def test_corrupt_image_raises_naming_the_file(folder_with_corrupt):
    root, _ = folder_with_corrupt
    with pytest.raises(CorruptImageError, match=r"img_005\.png") as info:
        load_dataset("folder", "train", root, test_fraction=0.25)
    assert info.value.path.endswith("img_005.png")


def test_corrupt_image_skip_warns_per_file(folder_with_corrupt):
    root, arrays = folder_with_corrupt
    with pytest.warns(CorruptImageWarning) as record:
        parts = [
            load_dataset("folder", s, root, test_fraction=0.25, on_error="skip", cache=False)
            for s in ("train", "val", "test")
        ]
    messages = " ".join(str(w.message) for w in record)
    assert "img_005.png" in messages and "img_007.png" in messages
    assert sum(len(p) for p in parts) == 10
    good = {
        a.transpose(2, 0, 1).tobytes()
        for p, a in arrays.items()
        if not p.endswith(("img_005.png", "img_007.png"))
    }
    assert {x.numpy().tobytes() for p in parts for x in p.images} == good


def test_cache_hit_does_not_decode(tmp_path, monkeypatch):
    write_pngs(tmp_path / "imgs", 10, 0)
    cache_dir = tmp_path / "cache"
    first = load_dataset("folder", "train", tmp_path / "imgs", cache_dir=cache_dir)
    assert len(list(cache_dir.glob("*.pt"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("decoded again despite a cache entry")

    monkeypatch.setattr(decode_module, "decode_images", fail)
    again = load_dataset("folder", "train", tmp_path / "imgs", cache_dir=cache_dir)
    assert torch.equal(first.images, again.images)
    assert len(load_dataset("folder", "test", tmp_path / "imgs", cache_dir=cache_dir)) == 1
    # a changed file or other options miss the cache
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("folder", "train", tmp_path / "imgs", cache_dir=cache_dir, image_size=4)
    target = tmp_path / "imgs" / "img_000.png"
    os.utime(target, ns=(0, 12345))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("folder", "train", tmp_path / "imgs", cache_dir=cache_dir)


def test_cache_location_from_environment(tmp_path, monkeypatch):
    write_pngs(tmp_path / "imgs", 5, 0)
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "envcache"))
    load_dataset("folder", "train", tmp_path / "imgs")
    assert len(list((tmp_path / "envcache" / "folders").glob("*.pt"))) == 1
    assert not list((tmp_path / "envcache" / "folders").glob("*.tmp"))


def test_truncated_cache_file_is_rebuilt(tmp_path):
    write_pngs(tmp_path / "imgs", 5, 0)
    cache_dir = tmp_path / "cache"
    first = load_dataset("folder", "train", tmp_path / "imgs", cache_dir=cache_dir)
    (entry,) = cache_dir.glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable cache file"):
        again = load_dataset("folder", "train", tmp_path / "imgs", cache_dir=cache_dir)
    assert torch.equal(first.images, again.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("folder", "train", tmp_path / "imgs", cache_dir=cache_dir)  # healthy again


def _png_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.png"
        Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)).save(path)
        return path.read_bytes()


def _jpeg_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.jpg"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path, quality=75)
        return path.read_bytes()


VALID = {"png": _png_bytes(), "jpg": _jpeg_bytes()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["png", "jpg"]), data=st.data())
def test_random_corruption_gives_data_error_or_valid_images(fmt, data):
    original = VALID[fmt]
    blob = bytearray(original)
    kind = data.draw(st.sampled_from(["overwrite", "truncate", "random"]))
    if kind == "overwrite":
        start = data.draw(st.integers(0, len(blob) - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=32))
        blob[start : start + len(chunk)] = chunk
    elif kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        blob = bytearray(data.draw(st.binary(min_size=0, max_size=256)))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / f"a.{fmt}").write_bytes(original)
        (root / f"b.{fmt}").write_bytes(bytes(blob))
        try:
            ds = load_dataset(
                "folder", "test", root, test_fraction=0.5, cache=False, image_size=8, channels=3
            )
        except DataError as exc:
            assert f"b.{fmt}" in str(exc) or isinstance(exc, EmptyDatasetError)
        else:  # the corruption happened to leave a decodable image
            assert ds.images.shape == (1, 3, 8, 8) and ds.images.dtype == torch.uint8


def test_decode_images_detects_mode_after_a_corrupt_first_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"garbage")
    write_pngs(tmp_path / "b", 2, 0, mode="L")
    files = [tmp_path / "a.png", *sorted((tmp_path / "b").iterdir())]
    with pytest.warns(CorruptImageWarning) as record:
        images, kept = decode_module.decode_images(files, on_error="skip", num_workers=1)
    assert len(record) == 1 and "a.png" in str(record[0].message)
    assert images.shape == (2, 1, 6, 5) and kept.tolist() == [1, 2]


# --- symbolic links: the usual way a data set is linked into place -------------------------------


def _symlink(target: Path, link: Path) -> None:
    try:
        link.symlink_to(target, target_is_directory=target.is_dir())
    except (OSError, NotImplementedError) as exc:  # e.g. Windows without the privilege
        pytest.skip(f"cannot create symbolic links here: {exc}")


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded again despite a cache entry")

    monkeypatch.setattr(decode_module, "decode_images", fail)


def test_symlinked_files_load_and_cache(tmp_path, monkeypatch):
    arrays = write_pngs(tmp_path / "store", 10, 0)
    root = tmp_path / "linked"
    root.mkdir()
    for src in sorted(arrays):
        _symlink(Path(src), root / Path(src).name)
    real = load_dataset("folder", "train", tmp_path / "store", cache=False)
    ds = load_dataset("folder", "train", root, cache_dir=tmp_path / "cache")
    assert ds.name == "folder:linked" and torch.equal(ds.images, real.images)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    _no_decoding(monkeypatch)  # the cache key works for linked files: the second load is a hit
    again = load_dataset("folder", "train", root, cache_dir=tmp_path / "cache")
    assert torch.equal(again.images, real.images)


def test_repointed_file_link_misses_the_cache(tmp_path):
    # BMP files of one shape all have the same size; give them the same mtime too, so only the
    # link target tells the two cache entries apart
    store = tmp_path / "store"
    store.mkdir()
    for name, value in (("a.bmp", 10), ("b.bmp", 200)):
        Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(store / name)
        os.utime(store / name, ns=(10**18, 10**18))
    assert (store / "a.bmp").stat().st_size == (store / "b.bmp").stat().st_size
    root = tmp_path / "linked"
    root.mkdir()
    for i in range(4):
        write_pngs(root / f"p{i}", 1, i, size=(4, 4))
    link = root / "z.bmp"
    _symlink(store / "a.bmp", link)
    opts = {"test_fraction": 0.2, "val_fraction": 0.0, "cache_dir": tmp_path / "cache"}
    before = torch.cat([load_dataset("folder", s, root, **opts).images for s in ("train", "test")])
    link.unlink()
    _symlink(store / "b.bmp", link)
    after = torch.cat([load_dataset("folder", s, root, **opts).images for s in ("train", "test")])
    assert {int(x.max()) for x in before} >= {10} and 200 not in {int(x.min()) for x in before}
    assert any(bool((x == 200).all()) for x in after)  # the new target was decoded


def test_symlinked_subfolder_is_followed(tmp_path, monkeypatch):
    a = write_pngs(tmp_path / "root" / "a", 6, 0)
    b = write_pngs(tmp_path / "elsewhere" / "b_images", 4, 1)
    _symlink(tmp_path / "elsewhere" / "b_images", tmp_path / "root" / "b")
    root = tmp_path / "root"
    files = list_images(root)
    assert [f.relative_to(root).as_posix() for f in files] == [
        *(f"a/img_{i:03d}.png" for i in range(6)),
        *(f"b/img_{i:03d}.png" for i in range(4)),
    ]
    opts = {"labels": True, "test_fraction": 0.2, "val_fraction": 0.0}
    parts = [load_dataset("folder", s, root, **opts) for s in ("train", "test")]
    got = sorted(
        (x.permute(1, 2, 0).numpy().tobytes(), int(y))
        for p in parts
        for x, y in zip(p.images, p.labels, strict=True)
    )
    expected = sorted(
        [(v.tobytes(), 0) for v in a.values()] + [(v.tobytes(), 1) for v in b.values()]
    )
    assert got == expected
    _no_decoding(monkeypatch)
    assert torch.equal(load_dataset("folder", "train", root, **opts).images, parts[0].images)


def test_symlinked_root_loads_like_the_real_folder(tmp_path, monkeypatch):
    write_pngs(tmp_path / "data" / "train" / "x", 8, 0)
    write_pngs(tmp_path / "data" / "test" / "x", 3, 1)
    _symlink(tmp_path / "data", tmp_path / "mylink")
    real = load_dataset("folder", "train", tmp_path / "data", val_fraction=0.25)
    _no_decoding(monkeypatch)  # same files, same options: the link hits the real folder's entry
    linked = load_dataset("folder", "train", tmp_path / "mylink", val_fraction=0.25)
    assert torch.equal(linked.images, real.images) and len(linked) == 6
    assert linked.name == "folder:mylink"  # named as given, not after the link's target


def test_symlink_loop_is_skipped_with_a_warning(tmp_path):
    write_pngs(tmp_path / "root" / "a", 3, 0)
    _symlink(tmp_path / "root", tmp_path / "root" / "a" / "again")
    with pytest.warns(UserWarning, match=r"again: a symbolic link loop"):
        files = list_images(tmp_path / "root")
    assert len(files) == 3


def test_broken_file_link_is_named(tmp_path):
    write_pngs(tmp_path / "root", 4, 0)
    _symlink(tmp_path / "gone.png", tmp_path / "root" / "img_009.png")
    with pytest.raises(
        DataNotFoundError, match=r"img_009\.png is a broken symbolic link.*gone\.png"
    ):
        load_dataset("folder", "train", tmp_path / "root", test_fraction=0.25, channels=3)
    with pytest.warns(CorruptImageWarning, match=r"img_009\.png"):
        parts = [
            load_dataset("folder", s, tmp_path / "root", on_error="skip", channels=3, cache=False)
            for s in ("train", "val", "test")
        ]
    assert sum(len(p) for p in parts) == 4  # the 4 real images; the broken link is skipped


# --- bad inputs: one clear line, or a rebuilt cache ----------------------------------------------


def test_empty_image_file_is_named(tmp_path):
    write_pngs(tmp_path, 5, 0)
    (tmp_path / "img_002.png").write_bytes(b"")
    with pytest.raises(CorruptImageError, match=r"img_002\.png: the file is empty \(0 bytes\)"):
        load_dataset("folder", "train", tmp_path, test_fraction=0.2, cache=False)


def _corrupt_entries():
    """(id, function writing a bad entry at the path, reason the warning must give)."""

    def tensors(images, kept):
        return lambda p: torch.save({"images": images, "kept": kept}, p)

    u8 = torch.uint8
    return [
        ("empty", lambda p: p.write_bytes(b""), r"the file is empty \(0 bytes\)"),
        ("truncated", lambda p: p.write_bytes(p.read_bytes()[:100]), r"truncated or corrupt"),
        ("random-bytes", lambda p: p.write_bytes(bytes(range(256))), r"not a tensor file"),
        (
            "pickled-code",
            lambda p: p.write_bytes(b"cos\nsystem\n(S'echo hi'\ntR."),
            r"not a tensor file",
        ),
        ("a-list", lambda p: torch.save([1, 2], p), r"not a dict with 'images' and 'kept'"),
        (
            "kept-out-of-range",
            tensors(torch.zeros(4, 3, 6, 5, dtype=u8), torch.arange(4) + 100),
            r"'kept' is not an increasing list of positions among 5 files",
        ),
        (
            "kept-float",
            tensors(torch.zeros(4, 3, 6, 5, dtype=u8), torch.arange(4.0)),
            r"'kept' is not an int64 \(M,\) tensor",
        ),
        (
            "too-few-images",
            tensors(torch.zeros(2, 3, 6, 5, dtype=u8), torch.arange(2)),
            r"2 images for 5 files, but no file may be skipped",
        ),
        (
            "wrong-channels",
            tensors(torch.zeros(5, 1, 6, 5, dtype=u8), torch.arange(5)),
            r"images have 1 channels, not 3",
        ),
    ]


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [case[1:] for case in _corrupt_entries()],
    ids=[case[0] for case in _corrupt_entries()],
)
def test_corrupt_cache_entry_is_rebuilt_with_one_line(tmp_path, corrupt, reason):
    write_pngs(tmp_path / "imgs", 5, 0)
    opts = {"cache_dir": tmp_path / "cache", "channels": 3}
    first = load_dataset("folder", "train", tmp_path / "imgs", **opts)
    (entry,) = (tmp_path / "cache").glob("*.pt")
    corrupt(entry)
    with pytest.warns(UserWarning, match=r"ignoring unreadable cache file \S+\.pt \(") as record:
        again = load_dataset("folder", "train", tmp_path / "imgs", **opts)
    (message,) = [str(w.message) for w in record if "cache file" in str(w.message)]
    assert re.search(reason, message) and "\n" not in message
    assert torch.equal(again.images, first.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: the next load is a clean hit
        load_dataset("folder", "train", tmp_path / "imgs", **opts)


def test_cache_dir_that_is_a_file_warns_and_still_loads(tmp_path):
    write_pngs(tmp_path / "imgs", 5, 0)
    (tmp_path / "not-a-dir").write_text("x")
    with pytest.warns(UserWarning, match=r"not-a-dir is a file, not a folder; nothing is cached"):
        ds = load_dataset("folder", "train", tmp_path / "imgs", cache_dir=tmp_path / "not-a-dir")
    assert torch.equal(ds.images, load_dataset("folder", "train", tmp_path / "imgs").images)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"crop": "abc"}, r"folder: option crop must be True or False, got 'abc' \(str\)"),
        ({"labels": 3}, r"folder: option labels must be True or False, got 3 \(int\)"),
        ({"cache": "abc"}, r"folder: option cache must be True or False"),
        ({"channels": True}, r"folder: option channels must be an integer or None, got True"),
        ({"num_workers": "abc"}, r"folder: option num_workers must be an integer or None"),
        ({"num_workers": 0}, r"folder: num_workers must be a positive integer"),
        ({"cache_dir": 5}, r"folder: option cache_dir must be a path or None, got 5 \(int\)"),
    ],
    ids=["crop", "labels", "cache", "channels", "num_workers-text", "num_workers-0", "cache_dir"],
)
def test_bad_option_values(tmp_path, options, pattern):
    write_pngs(tmp_path, 5, 0)
    with pytest.raises(DataOptionError, match=pattern):
        load_dataset("folder", "train", tmp_path, **options)
