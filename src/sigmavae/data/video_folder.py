"""A user's own videos: a folder of frame folders and/or video files, as uint8 sequences.

Each sequence is either a sub-folder holding its frames as image files (sorted naturally by
name, so ``frame2.png`` comes before ``frame10.png``) or one video file (decoded with PyAV, an
optional dependency: ``pip install av``). Frames are cut into windows of ``frames`` frames and
returned as uint8 ``(N, frames, C, H, W)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import decode_cached
from .dataset import ImageDataset
from .decode import channels_of
from .errors import DataFormatError, DataNotFoundError, DataOptionError, EmptyDatasetError
from .folder import IMAGE_EXTENSIONS, SPLIT_DIRS
from .paths import short
from .registry import register_dataset
from .splits import check_fraction, train_val_indices, train_val_test_indices
from .transforms import center_crop_square, resize

#: File name endings (lower case) read as video files (with PyAV).
VIDEO_EXTENSIONS = (".avi", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".webm")

DESCRIPTION = """
Your own videos, as folders of frame images or video files: root is a folder whose entries are
sequences, each either a sub-folder of frame images (png, jpg, bmp, ...; sorted naturally by file
name, frame2 before frame10; decoded once with Pillow and cached as a .pt file under
$SIGMAVAE_CACHE/video_folders or ~/.cache/sigmavae/video_folders, options cache, cache_dir) or a
video file (mp4, avi, mkv, mov, webm, ...; decoded with PyAV, pip install av). Output uint8 (N,
frames, C, H, W). frames is the window length: each sequence gives its first frames frames, or with
stride every window starting at 0, stride, 2 stride, ... that fits; a sequence shorter than frames
is refused naming it (frames=None needs every sequence to have one length and keeps them whole).
Splits are of sequences (the windows of one video stay in one split): train/ and test/ (and val/)
sub-folders of root if present, else test is carved with test_fraction (default 0.1, fixed seed)
and val from the rest with val_fraction and seed. Options: channels (1 or 3, default from the first
frame), crop=True centre-crops frames to a square before image_size resizes them (antialiased
bilinear); all frames must have one size unless image_size is given. Name: 'video_folder:<directory
name>'.
"""


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key ordering names by their runs of digits as numbers: ``"f2" < "f10"``."""
    parts = re.split(r"(\d+)", name)
    return (tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name)


def natural_sorted(paths: Sequence[Path]) -> list[Path]:
    """``paths`` sorted by :func:`natural_key` of their names."""
    return sorted(paths, key=lambda p: natural_key(p.name))


@dataclass(frozen=True)
class VideoSource:
    """One sequence: ``path`` (a folder or a video file) and, for a folder, its ``frame_files``."""

    path: Path
    frame_files: tuple[Path, ...] | None = None

    @property
    def is_video_file(self) -> bool:
        return self.frame_files is None


def _is_image(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_EXTENSIONS)


def find_sequences(directory: Path) -> list[VideoSource]:
    """The sequences in ``directory``, in natural order of their names (hidden entries skipped).

    Raises:
        DataFormatError: a sub-folder holds no frame images, or frame images lie directly in
            ``directory`` (each sequence needs its own sub-folder).
    """
    sources = []
    loose = []
    for entry in natural_sorted([e for e in directory.iterdir() if not e.name.startswith(".")]):
        if entry.is_dir():
            frames = natural_sorted([f for f in entry.iterdir()
                                     if not f.name.startswith(".") and _is_image(f)
                                     and f.is_file()])
            if not frames:
                raise DataFormatError(
                    f"video_folder: {entry} holds no frame images "
                    f"({', '.join(IMAGE_EXTENSIONS)}); every sub-folder of {directory} must be "
                    "one sequence of frames"
                )
            sources.append(VideoSource(entry, tuple(frames)))
        elif entry.name.lower().endswith(VIDEO_EXTENSIONS):
            sources.append(VideoSource(entry))
        elif _is_image(entry):
            loose.append(entry)
    if loose:
        raise DataFormatError(
            f"video_folder: frame image {loose[0]} lies directly in {directory}; put each "
            "sequence's frames in a sub-folder of its own (one sub-folder per sequence)"
        )
    return sources


def _split_dirs(root: Path) -> dict[str, Path] | None:
    dirs: dict[str, Path] = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if (root / name).is_dir():
                dirs[split] = root / name
                break
    return dirs if "train" in dirs and "test" in dirs else None


def _av() -> Any:
    """The PyAV module, or ``None`` where it is not installed."""
    try:
        import av  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return av


def read_video_file(path: Path, channels: int, limit: int | None = None) -> np.ndarray:
    """The frames of a video file: uint8 ``(T, H, W, channels)`` (at most ``limit`` frames).

    Raises:
        DataFormatError: PyAV is not installed (the message says ``pip install av``), or the
            file has no video stream or cannot be decoded.
    """
    av = _av()
    if av is None:
        raise DataFormatError(
            f"video_folder: {path} is a video file, and decoding it needs PyAV: pip install av "
            "(or put its frames as images in a sub-folder instead)"
        )
    fmt = "gray" if channels == 1 else "rgb24"
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataFormatError(f"video_folder: {path} has no video stream")
            for frame in container.decode(container.streams.video[0]):
                frames.append(frame.to_ndarray(format=fmt))
                if limit is not None and len(frames) >= limit:
                    break
    except DataFormatError:
        raise
    except Exception as exc:  # PyAV raises its own error types (av.error.*) and OSError
        raise DataFormatError(
            f"video_folder: cannot decode video file {path}: {type(exc).__name__}: {short(exc)}"
        ) from exc
    if not frames:
        raise DataFormatError(f"video_folder: video file {path} holds no frames")
    array = np.stack(frames)
    return array[..., None] if array.ndim == 3 else array


def _windows(length: int, frames: int, stride: int | None) -> list[int]:
    """Start frames of the windows of one sequence of ``length`` frames."""
    return [0] if stride is None else list(range(0, length - frames + 1, stride))


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DataOptionError(f"video_folder: option {name} must be a positive integer or None, "
                              f"got {value!r}")


def _frames_of(sources: list[VideoSource], frames: int | None, stride: int | None,
               channels: int) -> tuple[int, dict[Path, np.ndarray]]:
    """The window length, and the decoded frames of the video files (folders are counted)."""
    videos: dict[Path, np.ndarray] = {}
    need = None if stride is not None or frames is None else frames
    lengths = []
    for s in sources:
        if s.frame_files is None:
            videos[s.path] = read_video_file(s.path, channels, need)
            lengths.append(videos[s.path].shape[0])
        else:
            lengths.append(len(s.frame_files))
    if frames is None:
        if len(set(lengths)) > 1:
            short_i, long_i = int(np.argmin(lengths)), int(np.argmax(lengths))
            raise DataFormatError(
                f"video_folder: the sequences have different lengths ({sources[short_i].path} "
                f"has {lengths[short_i]} frames, {sources[long_i].path} has {lengths[long_i]}); "
                "pass frames=<window length> to cut windows of one length"
            )
        return lengths[0], videos
    for s, n in zip(sources, lengths, strict=True):
        if n < frames:
            raise DataFormatError(
                f"video_folder: sequence {s.path} has {n} frames, fewer than frames={frames}; "
                "remove it or pass a smaller frames"
            )
    return frames, videos


def _to_tensor(array: np.ndarray, crop: bool, image_size: int | None) -> torch.Tensor:
    """uint8 ``(T, H, W, C)`` frames -> ``(T, C, H', W')`` after the crop and resize."""
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    if crop:
        x = center_crop_square(x)
    if image_size is not None:
        x = resize(x.contiguous(), (image_size, image_size))
    return x.contiguous()


@register_dataset("video_folder", DESCRIPTION)
def load_video_folder(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
    frames: int | None = None,
    stride: int | None = None,
    channels: int | None = None,
    crop: bool = False,
    test_fraction: float = 0.1,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> ImageDataset:
    """The windows of ``root``'s sequences in ``split``: uint8 ``(N, frames, C, H, W)``."""
    if root is None:
        raise DataOptionError("video_folder: pass root=<folder of frame folders or videos>")
    if not root.is_dir():
        raise DataNotFoundError(f"video_folder: {root} is not a directory (root must be a "
                                "folder of frame folders or video files)")
    if download:
        raise DataOptionError("video_folder: download=True is not supported (the videos are "
                              "your own)")
    if channels not in (None, 1, 3):
        raise DataOptionError(f"video_folder: channels must be 1, 3 or None, got {channels!r}")
    _check_positive("frames", frames)
    _check_positive("stride", stride)
    test_fraction = check_fraction("test_fraction", test_fraction)

    dirs = _split_dirs(root)
    if dirs is None:
        base, everything = root, find_sequences(root)
        if not everything:
            raise EmptyDatasetError(f"video_folder: no frame folders or video files "
                                    f"({', '.join(VIDEO_EXTENSIONS)}) in {root}")
        index = train_val_test_indices(len(everything), split, val_fraction, test_fraction, seed)
    else:
        source = ("test" if split == "test"
                  else ("val" if split == "val" and "val" in dirs else "train"))
        base, everything = dirs[source], find_sequences(dirs[source])
        if not everything:
            raise EmptyDatasetError(f"video_folder: no frame folders or video files in {base}")
        index = (train_val_indices(len(everything), split, val_fraction, seed)
                 if source == "train" and "val" not in dirs else torch.arange(len(everything)))
    sources = [everything[int(i)] for i in index]
    if channels is None:
        first = next((s for s in sources if s.frame_files is not None), None)
        channels = 3 if first is None or first.frame_files is None else channels_of(
            first.frame_files[0])
    length, videos = _frames_of(sources, frames, stride, channels)

    # frame folders: every frame any window uses, decoded in one call (through the cache)
    files = [f for s in sources if s.frame_files is not None
             for f in s.frame_files[: (len(s.frame_files) if stride is not None else length)]]
    decoded = None
    if files:
        decoded, _ = decode_cached(
            files, base=base, kind="video_folders",
            decode_options={"channels": channels, "image_size": image_size,
                            "crop": "square" if crop else None, "on_error": "raise"},
            cache=cache, cache_dir=cache_dir)
    windows: list[torch.Tensor] = []
    reference: tuple[tuple[int, ...], Path] | None = None
    at = 0
    for s in sources:
        if s.frame_files is None:
            clip = _to_tensor(videos[s.path], crop, image_size)
        else:
            assert decoded is not None
            used = len(s.frame_files) if stride is not None else length
            clip = decoded[at:at + used]
            at += used
        shape = tuple(clip.shape[1:])
        if reference is None:
            reference = (shape, s.path)
        elif shape != reference[0]:
            raise DataFormatError(
                f"video_folder: the frames of {s.path} are {shape[1]}x{shape[2]} pixels but those "
                f"of {reference[1]} are {reference[0][1]}x{reference[0][2]}; pass "
                "image_size=<side> to resize every frame to one size"
            )
        windows.extend(clip[start:start + length] for start in _windows(clip.shape[0], length,
                                                                          stride))
    images = torch.stack(windows).contiguous()
    return ImageDataset(images=images, name=f"video_folder:{Path(os.path.abspath(root)).name}",
                        split=split)
