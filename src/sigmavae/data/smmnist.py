"""Stochastic Moving MNIST (Denton & Fergus, 2018): MNIST digits bouncing in a 64x64 frame.

Each sequence holds ``digits`` MNIST digits (resized to 32x32) moving in a 64x64 grey frame. A
digit starts at a random top-left corner ``(row, column)`` in ``0..31`` with a velocity drawn per
axis uniformly from ``-4..4`` pixels per frame. Before each frame is drawn, rows are checked, then
columns (the rule of SVG's ``data/moving_mnist.py`` with ``deterministic=False``):

- a row below 0 is set to 0, the row velocity is drawn anew from ``1..4`` (away from the wall) and
  the column velocity from ``-4..4``; a row above 31 is set to 31 (SVG's ``64 - 32 - 1``) with a
  row velocity from ``-4..-1`` and a column velocity from ``-4..4``;
- then the same for columns (a column velocity away from the wall, a new row velocity);
- the digit is drawn at its corner, and the corner moves by the velocity.

So a digit never leaves the frame and no pixel of it is cut; where digits overlap their
intensities are summed and clipped at 255. The bounce is the stochastic part: the speed after a
wall is new, not a reflection.

Everything is generated in memory (seconds for 10,000 sequences of 15 frames; nothing is cached):
the digit images from one MNIST file read by the ``mnist`` loader, and the trajectories from a
numpy :class:`~numpy.random.Generator` of this module's own, seeded from ``seed`` and the split,
so the same arguments always give the identical tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataNotFoundError, DataOptionError
from .registry import load_dataset, register_dataset
from .splits import train_val_indices, train_val_test_indices
from .transforms import resize

#: Side of a frame and of a digit, in pixels.
FRAME_SIZE = 64
DIGIT_SIZE = 32
#: Top-left corners lie in ``0..LIMIT`` (SVG: a digit at ``>= 64 - 32`` is put back at ``64 - 32
#: - 1``, so the last row and column of the frame are never covered).
LIMIT = FRAME_SIZE - DIGIT_SIZE - 1
#: Velocities are in ``-MAX_SPEED..MAX_SPEED`` pixels per frame; after a wall ``1..MAX_SPEED``.
MAX_SPEED = 4
#: Sequences per split when ``sequences`` is not given.
DEFAULT_SEQUENCES = {"train": 10_000, "val": 1_000, "test": 1_000}
#: Fraction of a carved MNIST file whose digits are held out for the test split.
TEST_DIGITS_FRACTION = 0.1
#: Root of the trajectory seeds: ``SeedSequence([SMMNIST_SEED, split, seed])`` (test: seed 0).
SMMNIST_SEED = 20_180_301
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
MNIST_SPLITS = ("test", "train", "both")

DESCRIPTION = """
Stochastic Moving MNIST (Denton & Fergus 2018, SVG): sequences of 64x64 grey frames, uint8
(N, frames, 1, 64, 64), in which digits MNIST digits (default 2) resized to 32x32 move from a
random start with velocities in -4..4 pixels per frame and, at a wall, bounce with a new random
speed of 1..4 away from it (and a new velocity along the wall); overlaps are summed and clipped
at 255. Generated in memory from one MNIST file, nothing cached: root must be an MNIST folder
as the mnist set reads it (<root>/MNIST/raw/..., download=True fetches it). Options: frames per
sequence (default 15 = 5 context + 10 predicted); sequences per split (default 10,000 train,
1,000 val, 1,000 test); digits per sequence; mnist_split, which MNIST digits are used: 'test'
(default) carves the 10,000 t10k digits into disjoint pools, a fixed 10% for test and val_fraction
of the rest (chosen by seed) for val, the rest for train; 'train' carves the 60,000 train digits
the same way; 'both' is SVG's setting, train and val digits from the train file (val carved with
val_fraction and seed) and test digits from the t10k file. So test sequences never show a digit
image of train. Trajectories and digit choices come from a generator seeded by seed and the split;
test is fixed (the same for every seed). image_size resizes the frames.
"""


@dataclass(frozen=True)
class MovingDigits:
    """Generated sequences and what generated them.

    Attributes:
        frames: uint8 ``(N, T, 1, 64, 64)``, intensities 0..255.
        positions: int64 ``(N, T, D, 2)``: the (row, column) in pixels of digit ``d``'s top-left
            corner in frame ``t`` (always in ``0..31``).
        velocities: int64 ``(N, T, D, 2)``: the (row, column) step in pixels per frame taken after
            frame ``t`` (after any bounce at ``t``), in ``-4..4``.
        digits: int64 ``(N, D)``: the index of each digit's image in the digit pool.
    """

    frames: torch.Tensor
    positions: torch.Tensor
    velocities: torch.Tensor
    digits: torch.Tensor


def trajectories(n: int, frames: int, digits: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Corners and velocities of ``digits`` digits in ``n`` sequences of ``frames`` frames.

    Returns:
        ``(positions, velocities)``, int64 ``(n, frames, digits, 2)`` each, (row, column) in
        pixels and pixels per frame, following the bounce rule of the module docstring. Each step
        draws the same numbers whether or not a digit bounces, so results depend only on ``rng``.
    """
    shape = (n, digits)
    pos = rng.integers(0, LIMIT + 1, size=(*shape, 2))
    vel = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=(*shape, 2))
    positions = np.empty((n, frames, digits, 2), dtype=np.int64)
    velocities = np.empty_like(positions)
    for t in range(frames):
        for axis in (0, 1):  # rows, then columns, as SVG
            other = 1 - axis
            away = rng.integers(1, MAX_SPEED + 1, size=shape)
            along = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=shape)
            low, high = pos[..., axis] < 0, pos[..., axis] > LIMIT
            hit = low | high
            pos[..., axis] = np.clip(pos[..., axis], 0, LIMIT)
            vel[..., axis] = np.where(low, away, np.where(high, -away, vel[..., axis]))
            vel[..., other] = np.where(hit, along, vel[..., other])
        positions[:, t] = pos
        velocities[:, t] = vel
        pos = pos + vel
    return positions, velocities


def render(digit_images: np.ndarray, which: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Draw the frames: uint8 ``(N, T, 64, 64)``.

    Args:
        digit_images: uint8 ``(M, 32, 32)``, the digit pool.
        which: int ``(N, D)``, the pool index of each sequence's digits.
        positions: int ``(N, T, D, 2)`` top-left corners in ``0..31``.

    Digits are summed and clipped at 255. Frames are grouped by corner, so each of the at most
    32 x 32 corners is one slice assignment over all frames that share it.
    """
    n, t, d, _ = positions.shape
    out = np.zeros((n * t, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    flat = positions.reshape(n * t, d, 2)
    pool_index = np.repeat(which, t, axis=0)  # (N * T, D)
    span = LIMIT + 1
    for slot in range(d):
        key = flat[:, slot, 0] * span + flat[:, slot, 1]
        order = np.argsort(key, kind="stable")
        keys, starts = np.unique(key[order], return_index=True)
        ends = np.append(starts[1:], order.size)
        for k, a, b in zip(keys.tolist(), starts.tolist(), ends.tolist(), strict=True):
            rows = order[a:b]
            y, x = divmod(k, span)
            window = (rows, slice(y, y + DIGIT_SIZE), slice(x, x + DIGIT_SIZE))
            patch = digit_images[pool_index[rows, slot]].astype(np.uint16)
            out[window] = np.minimum(out[window] + patch, 255).astype(np.uint8)
    return out.reshape(n, t, FRAME_SIZE, FRAME_SIZE)


def moving_digits(digit_images: torch.Tensor | np.ndarray, n: int, frames: int, digits: int,
                  rng: np.random.Generator) -> MovingDigits:
    """``n`` sequences of ``frames`` frames with ``digits`` digits drawn uniformly from the pool
    ``digit_images`` (uint8 ``(M, 32, 32)`` or ``(M, 1, 32, 32)``)."""
    pool = np.asarray(digit_images, dtype=np.uint8)
    if pool.ndim == 4:
        pool = pool[:, 0]
    if pool.ndim != 3 or pool.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or pool.shape[0] == 0:
        raise DataOptionError(f"smmnist: the digit pool must be uint8 (M, {DIGIT_SIZE}, "
                              f"{DIGIT_SIZE}) with M >= 1, got shape {pool.shape}")
    which = rng.integers(0, pool.shape[0], size=(n, digits))
    positions, velocities = trajectories(n, frames, digits, rng)
    video = render(pool, which, positions)
    return MovingDigits(frames=torch.from_numpy(video).unsqueeze(2),
                        positions=torch.from_numpy(positions),
                        velocities=torch.from_numpy(velocities),
                        digits=torch.from_numpy(which.astype(np.int64)))


def _mnist(split: str, root: Path | None, download: bool) -> torch.Tensor:
    """All images of one official MNIST file (``"train"``: 60,000, ``"test"``: 10,000)."""
    try:
        data = load_dataset("mnist", split, root, download=download, val_fraction=0.0)
    except DataNotFoundError as err:
        raise DataNotFoundError(
            f"smmnist: the digits come from MNIST's official {split} file, and root must be an "
            f"MNIST folder: {err}"
        ) from None
    return data.images


def digit_pool(split: str, root: Path | None, *, mnist_split: str = "test",
               download: bool = False, val_fraction: float = 0.1, seed: int = 0,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The digit images ``split`` may use: ``(uint8 (M, 1, 32, 32), int64 (M,) indices)``.

    The indices say which images of the MNIST file they are, so pools can be checked to be
    disjoint: with ``mnist_split`` ``"test"`` or ``"train"`` that file is carved with
    :func:`~sigmavae.data.splits.train_val_test_indices` (test: a fixed 10%, val: ``val_fraction``
    of the rest chosen by ``seed``, train: the rest); with ``"both"``, train and val carve the
    official train file (:func:`~sigmavae.data.splits.train_val_indices`) and test is the whole
    official test file.
    """
    if mnist_split not in MNIST_SPLITS:
        raise DataOptionError(f"smmnist: option mnist_split must be one of "
                              f"{', '.join(MNIST_SPLITS)}, got {mnist_split!r}")
    if mnist_split == "both":
        images = _mnist("test" if split == "test" else "train", root, download)
        index = (torch.arange(images.shape[0]) if split == "test"
                 else train_val_indices(images.shape[0], split, val_fraction, seed))
    else:
        images = _mnist(mnist_split, root, download)
        index = train_val_test_indices(images.shape[0], split, val_fraction,
                                       TEST_DIGITS_FRACTION, seed)
    return resize(images[index], (DIGIT_SIZE, DIGIT_SIZE)), index


def split_generator(split: str, seed: int) -> np.random.Generator:
    """The generator of ``split``'s sequences: seeded by ``seed`` and the split (test: fixed)."""
    run_seed = 0 if split == "test" else seed
    return np.random.default_rng(np.random.SeedSequence(
        [SMMNIST_SEED, _SPLIT_CODE[split], run_seed % (2**63)]))


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataOptionError(f"smmnist: option {name} must be a positive integer, got {value!r}")
    return value


def smmnist_sequences(split: str, root: Path | None, *, download: bool = False,
                      val_fraction: float = 0.1, seed: int = 0, frames: int = 15,
                      sequences: int | None = None, digits: int = 2,
                      mnist_split: str = "test") -> MovingDigits:
    """The sequences of ``split`` with their trajectories (what :func:`load_smmnist` returns the
    frames of, at 64x64)."""
    frames, digits = _positive("frames", frames), _positive("digits", digits)
    n = DEFAULT_SEQUENCES[split] if sequences is None else _positive("sequences", sequences)
    pool, _ = digit_pool(split, root, mnist_split=mnist_split, download=download,
                         val_fraction=val_fraction, seed=seed)
    return moving_digits(pool, n, frames, digits, split_generator(split, seed))


@register_dataset("smmnist", DESCRIPTION)
def load_smmnist(
    split: str,
    root: Path | None,
    *,
    image_size: int | None,
    download: bool,
    val_fraction: float,
    seed: int,
    frames: int = 15,
    sequences: int | None = None,
    digits: int = 2,
    mnist_split: str = "test",
) -> ImageDataset:
    """Stochastic Moving MNIST ``split``: uint8 ``(N, frames, 1, S, S)``, ``S = image_size``
    (default 64)."""
    moving = smmnist_sequences(split, root, download=download, val_fraction=val_fraction,
                               seed=seed, frames=frames, sequences=sequences, digits=digits,
                               mnist_split=mnist_split)
    video = moving.frames
    if image_size is not None and image_size != FRAME_SIZE:
        n, t = video.shape[:2]
        video = resize(video.reshape(n * t, 1, FRAME_SIZE, FRAME_SIZE),
                       (image_size, image_size)).reshape(n, t, 1, image_size, image_size)
    return ImageDataset(images=video.contiguous(), name="smmnist", split=split)
