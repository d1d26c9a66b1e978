"""The in-memory image data set every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import DataFormatError, DataOptionError

#: Valid split names, in canonical order.
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """A whole split of an image data set, decoded once into memory.

    Attributes:
        images: ``torch.uint8`` tensor of shape ``(N, C, H, W)``, values 0..255 (8-bit intensities),
            contiguous, on the CPU as loaded. ``C`` is 1 (grey) or 3 (RGB).
        name: data set name, e.g. ``"frey"``, ``"cifar10"``, ``"folder:<basename>"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        labels: ``torch.int64`` tensor of shape ``(N,)`` when the set has class labels, else
            ``None``.

    Training code slices batches from ``images`` and converts whole batches (``float() / 255`` for
    continuous likelihoods, integers for discrete ones); see :class:`sigmavae.data.InMemoryBatches`.
    """

    images: torch.Tensor
    name: str
    split: str
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, torch.Tensor):
            raise DataFormatError(f"{self.name}: images must be a torch.Tensor, got {type(images)}")
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataFormatError(
                f"{self.name}/{self.split}: images must be a uint8 tensor of shape (N, C, H, W), "
                f"got dtype {images.dtype} and shape {tuple(images.shape)}"
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

    def __len__(self) -> int:
        """Number of examples ``N``."""
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image, in channels and pixels."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def subset(self, n: int) -> ImageDataset:
        """The first ``n`` examples (all of them if ``n >= len(self)``), sharing memory.

        Raises:
            DataOptionError: if ``n`` is not a positive integer.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataOptionError(f"subset: n must be a positive integer, got {n!r}")
        labels = None if self.labels is None else self.labels[:n]
        return ImageDataset(images=self.images[:n], name=self.name, split=self.split, labels=labels)

    def __repr__(self) -> str:
        labels = "none" if self.labels is None else "int64"
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, labels={labels})"
        )
