"""The in-memory data set every loader returns: images or sequences of frames."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import DataFormatError, DataOptionError

#: Valid split names, in canonical order.
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """A whole split of an image or video data set, decoded once.

    Attributes:
        images: ``torch.uint8`` tensor of shape ``(N, C, H, W)`` (images) or ``(N, T, C, H, W)``
            (sequences of ``T`` frames), values 0..255 (8-bit intensities), contiguous, on the
            CPU as loaded. ``C`` is 1 (grey) or 3 (RGB). Large video sets (``bair``) hold a
            memory-mapped file here (copy-on-write: writes never reach the file).
        name: data set name, e.g. ``"frey"``, ``"cifar10"``, ``"folder:<basename>"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        labels: ``torch.int64`` tensor of shape ``(N,)`` when the set has class labels, else
            ``None``.
        conditions: float32 ``(N, T, K)`` per-frame side information of sequences (``bair``: the
            robot's action and end-effector position, see its loader), else ``None``.

    Training code slices batches from ``images`` and converts whole batches (``float() / 255`` for
    continuous likelihoods, integers for discrete ones); see :class:`sigmavae.data.InMemoryBatches`.
    """

    images: torch.Tensor
    name: str
    split: str
    labels: torch.Tensor | None = None
    conditions: torch.Tensor | None = None

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, torch.Tensor):
            raise DataFormatError(f"{self.name}: images must be a torch.Tensor, got {type(images)}")
        if images.dtype != torch.uint8 or images.ndim not in (4, 5):
            raise DataFormatError(
                f"{self.name}/{self.split}: images must be a uint8 tensor of shape (N, C, H, W) "
                f"or, for sequences, (N, T, C, H, W), got dtype {images.dtype} and shape "
                f"{tuple(images.shape)}"
            )
        if not images.is_contiguous():
            object.__setattr__(self, "images", images.contiguous())
        if self.labels is not None:
            labels = self.labels
            if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
                raise DataFormatError(f"{self.name}/{self.split}: labels must be a 1-d tensor")
            if labels.shape[0] != images.shape[0]:
                raise DataFormatError(
                    f"{self.name}/{self.split}: {labels.shape[0]} labels for "
                    f"{images.shape[0]} images"
                )
            if labels.dtype != torch.int64:
                object.__setattr__(self, "labels", labels.to(torch.int64))
        if self.conditions is not None:
            cond = self.conditions
            if (not isinstance(cond, torch.Tensor) or images.ndim != 5 or cond.ndim != 3
                    or tuple(cond.shape[:2]) != tuple(images.shape[:2])):
                got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
                raise DataFormatError(
                    f"{self.name}/{self.split}: conditions must be a (N, T, K) tensor matching "
                    f"sequences (N, T, C, H, W) = {tuple(images.shape)}, got {got}"
                )
            if cond.dtype != torch.float32:
                object.__setattr__(self, "conditions", cond.to(torch.float32))

    def __len__(self) -> int:
        """Number of examples ``N``."""
        return int(self.images.shape[0])

    @property
    def is_sequence(self) -> bool:
        """Whether the examples are sequences of frames ``(T, C, H, W)``."""
        return self.images.ndim == 5

    @property
    def frames(self) -> int | None:
        """Frames ``T`` per sequence, or ``None`` for images."""
        return int(self.images.shape[1]) if self.is_sequence else None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image (of one frame, for sequences), in channels and pixels."""
        c, h, w = self.images.shape[-3:]
        return (int(c), int(h), int(w))

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one example: ``(C, H, W)``, or ``(T, C, H, W)`` for sequences."""
        return tuple(int(s) for s in self.images.shape[1:])

    def subset(self, n: int, frames: int | None = None) -> ImageDataset:
        """The first ``n`` examples (all of them if ``n >= len(self)``), sharing memory; for
        sequences, ``frames`` keeps the first ``frames`` frames of each (a copy, made contiguous).

        Raises:
            DataOptionError: if ``n`` is not a positive integer, or ``frames`` is given for images
                or is not in ``1..T``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataOptionError(f"subset: n must be a positive integer, got {n!r}")
        images = self.images[:n]
        labels = None if self.labels is None else self.labels[:n]
        conditions = None if self.conditions is None else self.conditions[:n]
        if frames is not None:
            total = self.frames
            if total is None:
                raise DataOptionError(f"subset: frames={frames!r} needs sequences, but "
                                      f"{self.name} holds images (N, C, H, W)")
            if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= total:
                raise DataOptionError(f"subset: frames must be an integer in 1..{total} (the "
                                      f"frames of each sequence), got {frames!r}")
            images = images[:, :frames]
            conditions = None if conditions is None else conditions[:, :frames].contiguous()
        return ImageDataset(images=images, name=self.name, split=self.split, labels=labels,
                            conditions=conditions)

    def __repr__(self) -> str:
        labels = "none" if self.labels is None else "int64"
        frames = "" if self.frames is None else f"frames={self.frames}, "
        conditions = ("" if self.conditions is None
                      else f", conditions={tuple(self.conditions.shape[2:])}")
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"{frames}image_shape={self.image_shape}, labels={labels}{conditions})"
        )
