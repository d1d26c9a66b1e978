"""BAIR robot pushing (Ebert et al. 2017, ``softmotion30_44k``), the video set of SVG.

Two layouts are read, with identical results for identical content:

- the original release, ``softmotion30_44k/{train,test}/*.tfrecords``: each record is one
  ``tf.train.Example`` of a 30-frame sequence; frame ``i`` is the feature
  ``{i}/image_aux1/encoded`` (the raw 64x64x3 uint8 bytes, row-major, not PNG), with
  ``{i}/action`` (4 floats) and ``{i}/endeffector_pos`` (3 floats). Read with our own reader
  (:mod:`sigmavae.data.tfrecord`, CRCs checked), no TensorFlow;
- the per-frame PNGs SVG's ``data/convert_bair.py`` writes, ``processed_data/{train,test}/<tfrecord
  name without .tfrecords>/<k>/<i>.png`` (``k`` the 1-based position of the record in its file,
  ``i`` the frame 0..29). That script saves float frames with ``scipy.misc.imsave``, which (as we
  read scipy's ``bytescale``) stretches each frame's min..max to 0..255, so its PNGs can differ
  slightly from the raw bytes of the records; this loader returns what the files hold.

Sequences are ordered by file (natural order of names: ``traj_256_to_511`` before
``traj_1024_to_1279``), then by position in the file. The train split (about 44,000 sequences,
16 GB at 30 frames) is decoded once into a uint8 ``.npy`` cache file and memory-mapped, so it is
never all in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from .cache import cache_root
from .dataset import ImageDataset
from .decode import decode_images
from .errors import DataFormatError, DataNotFoundError, DataOptionError, EmptyDatasetError
from .paths import resolve_root
from .registry import register_dataset
from .splits import train_val_indices
from .tfrecord import count_records, iter_examples
from .transforms import resize

#: Frames per sequence in the release, and their native size.
SEQUENCE_FRAMES = 30
SIDE = 64
CHANNELS = 3
TFRECORD_FOLDER = "softmotion30_44k"
PNG_FOLDER = "processed_data"
TFRECORD_SUFFIX = ".tfrecords"
#: The per-frame features read from each ``tf.train.Example``.
IMAGE_FEATURE = "{i}/image_aux1/encoded"
ACTION_FEATURE = "{i}/action"
ENDEFFECTOR_FEATURE = "{i}/endeffector_pos"
#: What the ``K = 7`` columns of :attr:`ImageDataset.conditions` hold.
CONDITION_NAMES = ("action_0", "action_1", "action_2", "action_3",
                   "endeffector_x", "endeffector_y", "endeffector_z")
LAYOUTS = ("auto", "tfrecord", "png")
#: Bump when the cached content for the same files and options would change.
CACHE_VERSION = 1
#: Sequences decoded (and resized) at a time while building a split.
CHUNK = 256

DESCRIPTION = """
BAIR robot pushing (Ebert et al. 2017, softmotion30_44k, the SVG setting): sequences of 30 RGB
frames of 64x64 of a robot arm pushing objects, uint8 (N, frames, 3, 64, 64); frames (default
12 = 2 context + 10 predicted, as SVG trains; 30 for the whole sequence) keeps the first frames
of each sequence. root is the folder of the original release softmotion30_44k/ with
{train,test}/*.tfrecords (read without TensorFlow, CRCs checked unless check_crc=False), or the
processed_data/ folder of per-frame PNGs SVG's convert_bair.py writes
({train,test}/<record file>/<k>/<i>.png), or a folder above either; layout chooses when both are
there (default auto: the TFRecords). Get the release from
http://rail.eecs.berkeley.edu/datasets/bair_robot_pushing_dataset_v0.tar (30 GB). test is the
release's test/ folder (one file, traj_0_to_255: 256 sequences); val is carved from train with
val_fraction and seed. Each split is decoded once into a uint8 .npy cache file and memory-mapped
(never all in RAM: train is about 6 GB at 12 frames, 16 GB at 30), under cache_dir or
$SIGMAVAE_CACHE/bair or ~/.cache/sigmavae/bair; cache=False decodes into memory instead. From
TFRecords the dataset's conditions tensor holds each frame's action (4) and end-effector
position (3), float32 (N, frames, 7). image_size resizes the frames (antialiased bilinear).
"""

_HOW = ("download and extract http://rail.eecs.berkeley.edu/datasets/"
        "bair_robot_pushing_dataset_v0.tar (it holds softmotion30_44k/) and pass root=<the folder "
        "holding softmotion30_44k> or root=<softmotion30_44k>")


# -- finding the files ------------------------------------------------------------------------


_SPLIT_FOLDERS = ("train", "test")


def _has_tfrecords(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.glob(f"*{TFRECORD_SUFFIX}"))


def _is_tfrecord_root(folder: Path) -> bool:
    """``train/`` or ``test/`` of ``folder`` holds ``*.tfrecords`` files."""
    return any(_has_tfrecords(folder / s) for s in _SPLIT_FOLDERS)


def _is_png_root(folder: Path) -> bool:
    """``train/`` or ``test/`` of ``folder`` holds record-file folders of sequence folders."""
    if folder.name == TFRECORD_FOLDER or _is_tfrecord_root(folder):
        return False
    for s in _SPLIT_FOLDERS:
        split = folder / s
        if split.is_dir():
            record = next((p for p in split.iterdir() if p.is_dir()), None)
            if record is not None and any(p.is_dir() for p in record.iterdir()):
                return True
    return False


def find_layout(root: Path, layout: str = "auto") -> tuple[str, Path]:
    """``("tfrecord", <softmotion30_44k folder>)`` or ``("png", <processed_data folder>)``.

    ``root`` may be either folder or the folder above it; ``layout`` ``"auto"`` prefers the
    TFRecords where both are found.

    Raises:
        DataNotFoundError: neither layout is under ``root`` (says what was looked for).
    """
    if layout not in LAYOUTS:
        raise DataOptionError(f"bair: option layout must be one of {', '.join(LAYOUTS)}, "
                              f"got {layout!r}")
    found: dict[str, Path] = {}
    for folder in (root, root / TFRECORD_FOLDER):
        if "tfrecord" not in found and _is_tfrecord_root(folder):
            found["tfrecord"] = folder
    for folder in (root, root / PNG_FOLDER):
        if "png" not in found and _is_png_root(folder):
            found["png"] = folder
    wanted = ("tfrecord", "png") if layout == "auto" else (layout,)
    for kind in wanted:
        if kind in found:
            return kind, found[kind]
    what = {"tfrecord": f"{TFRECORD_FOLDER}/{{train,test}}/*{TFRECORD_SUFFIX}",
            "png": f"{PNG_FOLDER}/{{train,test}}/<record file>/<k>/<i>.png"}
    looked = " or ".join(what[k] for k in wanted)
    raise DataNotFoundError(f"bair: no {looked} under {root} (root may also be that folder "
                            f"itself). To get the data: {_HOW}")


def tfrecord_files(folder: Path) -> list[Path]:
    """The ``*.tfrecords`` files of one split folder, in natural order of names."""
    from .video_folder import natural_sorted  # here: loader modules import each other lazily
    if not folder.is_dir():
        raise DataNotFoundError(f"bair: missing folder {folder}. To get the data: {_HOW}")
    files = natural_sorted([p for p in folder.iterdir()
                            if p.name.endswith(TFRECORD_SUFFIX) and p.is_file()])
    if not files:
        raise EmptyDatasetError(f"bair: no *{TFRECORD_SUFFIX} files in {folder}")
    return files


def png_sequences(folder: Path, frames: int) -> list[list[Path]]:
    """Frame files ``0.png .. {frames-1}.png`` of each sequence folder ``<file>/<k>`` of one
    split folder, in natural order of file names, then of ``k``.

    Raises:
        DataFormatError: a sequence folder lacks one of those frames (names it).
    """
    from .video_folder import natural_sorted

    if not folder.is_dir():
        raise DataNotFoundError(f"bair: missing folder {folder}. To get the data: {_HOW}")
    sequences = []
    for record_file in natural_sorted([p for p in folder.iterdir() if p.is_dir()]):
        for seq in natural_sorted([p for p in record_file.iterdir() if p.is_dir()]):
            names = {e.name for e in os.scandir(seq)}
            missing = [f"{i}.png" for i in range(frames) if f"{i}.png" not in names]
            if missing:
                raise DataFormatError(
                    f"bair: sequence folder {seq} lacks frame(s) {', '.join(missing[:4])}"
                    f"{' ...' if len(missing) > 4 else ''}; each needs 0.png..{frames - 1}.png "
                    f"for frames={frames}"
                )
            sequences.append([seq / f"{i}.png" for i in range(frames)])
    if not sequences:
        raise EmptyDatasetError(f"bair: no sequence folders <record file>/<k>/ in {folder}")
    return sequences


# -- decoding ---------------------------------------------------------------------------------


def _frame_bytes(example: dict, i: int, path: Path, index: int) -> np.ndarray:
    name = IMAGE_FEATURE.format(i=i)
    value = example.get(name)
    if not isinstance(value, list) or len(value) != 1:
        what = "missing" if value is None else "not one bytes value"
        raise DataFormatError(
            f"bair: {path}: record {index}: feature {name} is {what}; expected the raw "
            f"{SIDE}x{SIDE}x{CHANNELS} bytes of frame {i}"
        )
    if len(value[0]) != SIDE * SIDE * CHANNELS:
        raise DataFormatError(
            f"bair: {path}: record {index}: feature {name} holds {len(value[0])} bytes; expected "
            f"{SIDE * SIDE * CHANNELS} (raw {SIDE}x{SIDE}x{CHANNELS} uint8, not an encoded image)"
        )
    return np.frombuffer(value[0], dtype=np.uint8).reshape(SIDE, SIDE, CHANNELS)


def _conditions(example: dict, i: int, path: Path, index: int) -> np.ndarray:
    parts = []
    for template, size in ((ACTION_FEATURE, 4), (ENDEFFECTOR_FEATURE, 3)):
        name = template.format(i=i)
        value = example.get(name)
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.size != size:
            what = "missing" if value is None else "not a list of that many floats"
            raise DataFormatError(f"bair: {path}: record {index}: feature {name} is {what}; "
                                  f"expected {size} floats (every record needs them when the "
                                  "first record of the split has them)")
        parts.append(value)
    return np.concatenate(parts)


def _has_conditions(path: Path, check_crc: bool) -> bool:
    example = next(iter_examples(path, check_crc=check_crc), {})
    return ACTION_FEATURE.format(i=0) in example and ENDEFFECTOR_FEATURE.format(i=0) in example


def read_tfrecord_sequences(files: list[Path], frames: int, *, check_crc: bool = True,
                            conditions: bool = True,
                            ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Each sequence of ``files``, in order: ``(uint8 (frames, 3, 64, 64), float32 (frames, 7)
    or None)`` (the conditions when ``conditions``).

    Raises:
        DataFormatError: a corrupt or truncated file, or a record without a wanted feature
            (names the file and the record).
    """
    for path in files:
        for index, example in enumerate(iter_examples(path, check_crc=check_crc)):
            video = np.stack([_frame_bytes(example, i, path, index) for i in range(frames)])
            cond = (np.stack([_conditions(example, i, path, index) for i in range(frames)])
                    if conditions else None)
            yield video.transpose(0, 3, 1, 2), cond


def read_png_sequences(sequences: list[list[Path]]) -> Iterator[np.ndarray]:
    """Each sequence's frames, in order: uint8 ``(frames, 3, 64, 64)``, decoded ``CHUNK``
    sequences at a time.

    Raises:
        CorruptImageError, DataFormatError: a frame does not decode or is not 64x64.
    """
    for start in range(0, len(sequences), CHUNK):
        block = sequences[start:start + CHUNK]
        files = [f for seq in block for f in seq]
        images, _ = decode_images(files, channels=CHANNELS)
        if tuple(images.shape[1:]) != (CHANNELS, SIDE, SIDE):
            raise DataFormatError(
                f"bair: frame {files[0]} is {images.shape[2]}x{images.shape[3]} pixels; BAIR "
                f"frames are {SIDE}x{SIDE}"
            )
        yield from images.numpy().reshape(len(block), len(block[0]), CHANNELS, SIDE, SIDE)


# -- the cache --------------------------------------------------------------------------------


def cache_key(base: Path, sources: list[Path], options: dict) -> str:
    """Hex SHA-256 of the resolved ``base`` folder, each source file's path below it, size and
    mtime, and the options: any change to the files or options gives a new cache file."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "base": os.path.realpath(base),
                                   "options": options}, sort_keys=True).encode())
    for p in sources:
        st = p.stat()
        h.update(f"\n{p.relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _open_cached(path: Path, shape: tuple[int, ...], cond_path: Path,
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """The memory-mapped images and the conditions at ``path`` / ``cond_path``, or ``None``
    (absent, or unusable: then a one-line warning says why and the split is decoded again)."""
    if not (path.is_file() and cond_path.is_file()):
        return None
    try:
        images = np.load(path, mmap_mode="c", allow_pickle=False)
        cond = np.load(cond_path, allow_pickle=False)
    except Exception as exc:  # truncated or foreign files
        reason = f"unreadable: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    else:
        if images.dtype == np.uint8 and images.shape == shape and cond.dtype == np.float32 \
                and cond.ndim == 3 and cond.shape[:2] == shape[:2]:
            return images, cond
        reason = (f"holds {images.dtype} {images.shape} and conditions {cond.dtype} "
                  f"{cond.shape}, not uint8 {shape}")
    warnings.warn(f"ignoring unusable cache file {path} ({reason}); decoding again",
                  stacklevel=3)
    return None


def _replace(tmp: str, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _check_space(directory: Path, needed: int) -> None:
    """Refuse to start a cache file that would not fit (with 256 MiB to spare)."""
    free = shutil.disk_usage(directory).free
    if free < needed + (1 << 28):
        raise DataOptionError(
            f"bair: the cache file needs {_size(needed)} but {directory} has only "
            f"{_size(free)} free; pass cache_dir=<a folder with room> (or cache=False to decode "
            "into memory, for small splits)"
        )


def _build(shape: tuple[int, ...], fill: Callable[[np.ndarray], np.ndarray], *,
           directory: Path | None, path: Path | None, cond_path: Path | None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """A new uint8 array of ``shape`` filled by ``fill(images) -> conditions``: a memory-mapped
    ``.npy`` written atomically (a temporary file, then :func:`os.replace`; the conditions file
    first) when ``path`` is given, else an in-memory array."""
    if path is None or directory is None or cond_path is None:
        images = np.empty(shape, dtype=np.uint8)
        return images, fill(images)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".npy.tmp", dir=directory)
    except OSError as exc:
        raise DataOptionError(
            f"bair: cannot write a cache file in {directory} ({type(exc).__name__}: {exc}); pass "
            "cache_dir=<a writable folder> (or cache=False to decode into memory)"
        ) from None
    os.close(fd)
    try:
        _check_space(directory, int(np.prod(shape)))
    except DataOptionError:
        os.unlink(name)
        raise
    tmp: str | None = name
    cond_tmp: str | None = None
    try:
        images = np.lib.format.open_memmap(name, mode="w+", dtype=np.uint8, shape=shape)
        cond = fill(images)
        images.flush()
        del images
        fd, cond_name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".npy.tmp",
                                         dir=directory)
        cond_tmp = cond_name
        with os.fdopen(fd, "wb") as f:
            np.save(f, cond)
        _replace(cond_name, cond_path)
        cond_tmp = None
        _replace(name, path)  # last: an images file only exists beside its conditions
        tmp = None
    finally:
        for leftover in (tmp, cond_tmp):
            if leftover is not None and os.path.exists(leftover):
                os.unlink(leftover)
    return np.load(path, mmap_mode="c", allow_pickle=False), cond


# -- the loader -------------------------------------------------------------------------------


def _layout_rows(split: str, n: int, val_fraction: float, seed: int,
                 ) -> tuple[np.ndarray, slice]:
    """Where each source sequence goes (``-1``: not kept) and the rows of ``split``.

    Train and val share one array: train's sequences first, then val's, each in source order, so
    both are contiguous row ranges of one memory map.
    """
    rows = np.full(n, -1, dtype=np.int64)
    if split == "test":
        rows[:] = np.arange(n)
        return rows, slice(0, n)
    train = train_val_indices(n, "train", val_fraction, seed).numpy()
    val = (train_val_indices(n, "val", val_fraction, seed).numpy() if val_fraction > 0
           else np.zeros(0, dtype=np.int64))
    rows[train] = np.arange(train.size)
    rows[val] = train.size + np.arange(val.size)
    if split == "val" and val.size == 0:  # the same error as every other set
        train_val_indices(n, "val", val_fraction, seed)
    return rows, (slice(0, train.size) if split == "train" else slice(train.size, n))


@register_dataset("bair", DESCRIPTION)
def load_bair(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
    frames: int = 12,
    layout: str = "auto",
    check_crc: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> ImageDataset:
    """BAIR ``split``: uint8 ``(N, frames, 3, S, S)`` (``S = image_size``, default 64), memory-
    mapped from the cache; ``conditions`` float32 ``(N, frames, 7)`` from TFRecords."""
    if download:
        raise DataOptionError(f"bair: download=True is not supported (30 GB); {_HOW}")
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= \
            SEQUENCE_FRAMES:
        raise DataOptionError(f"bair: option frames must be an integer in 1..{SEQUENCE_FRAMES}, "
                              f"got {frames!r}")
    kind, base = find_layout(resolve_root(root), layout)
    folder = base / ("test" if split == "test" else "train")
    side = SIDE if image_size is None else image_size

    if kind == "tfrecord":
        files = tfrecord_files(folder)
        counts = [count_records(f, check_crc=check_crc) for f in files]
        n = sum(counts)
        with_cond = _has_conditions(files[0], check_crc)
        sources = files
    else:
        sequences = png_sequences(folder, frames)
        n, with_cond = len(sequences), False
        sources = [f for seq in sequences for f in seq]
    if n == 0:
        raise EmptyDatasetError(f"bair: {folder} holds no sequences")
    rows, take = _layout_rows(split, n, val_fraction, seed)
    kept = int((rows >= 0).sum())

    def fill(images: np.ndarray) -> np.ndarray:
        cond = np.zeros((kept, frames, len(CONDITION_NAMES) if with_cond else 0), np.float32)
        it: Iterator[tuple[np.ndarray, np.ndarray | None]] = (
            read_tfrecord_sequences(files, frames, check_crc=check_crc, conditions=with_cond)
            if kind == "tfrecord" else ((v, None) for v in read_png_sequences(sequences)))
        buffer: list[np.ndarray] = []
        targets: list[int] = []

        def flush() -> None:
            block = np.stack(buffer)
            if side != SIDE:
                flat = torch.from_numpy(block.reshape(-1, CHANNELS, SIDE, SIDE))
                block = resize(flat, (side, side)).numpy().reshape(len(buffer), frames,
                                                                   CHANNELS, side, side)
            images[np.array(targets)] = block
            buffer.clear()
            targets.clear()

        for j, (video, c) in enumerate(it):
            if rows[j] < 0:
                continue
            buffer.append(video)
            targets.append(int(rows[j]))
            if c is not None:
                cond[rows[j]] = c
            if len(buffer) == CHUNK:
                flush()
        if buffer:
            flush()
        return cond

    shape = (kept, frames, CHANNELS, side, side)
    path = cond_path = directory = None
    if cache:
        directory = (Path(cache_dir).expanduser() if cache_dir is not None
                     else cache_root() / "bair")
        carve = None if split == "test" else [val_fraction, seed]
        key = cache_key(base, sources, {"layout": kind, "split": folder.name, "frames": frames,
                                  "side": side, "carve": carve, "crc": check_crc,
                                  "conditions": with_cond})
        stem = f"bair-{folder.name}-{frames}f-{side}px-{key[:20]}"
        path, cond_path = directory / f"{stem}.npy", directory / f"{stem}.conditions.npy"
        found = _open_cached(path, shape, cond_path)
    else:
        found = None
    images, cond = found if found is not None else _build(
        shape, fill, directory=directory, path=path, cond_path=cond_path)
    video = torch.from_numpy(images[take])
    conditions = torch.from_numpy(np.ascontiguousarray(cond[take])) if cond.shape[2] else None
    return ImageDataset(images=video, name="bair", split=split, conditions=conditions)


__all__ = ["CONDITION_NAMES", "find_layout", "load_bair", "png_sequences", "read_png_sequences",
           "read_tfrecord_sequences", "tfrecord_files"]
