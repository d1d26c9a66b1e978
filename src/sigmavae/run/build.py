"""What a run trains on and with: the model and the data a :class:`TrainConfig` describes.

The trainer itself takes a ready model and ready data (``Trainer(config, train, val,
model=...)``); these builders are what it uses when it is given none, and what
:func:`~sigmavae.training.load_trained` uses to rebuild a model for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .. import likelihoods
from ..data import ImageDataset, load_dataset
from ..models import build_model
from ..objective import OBJECTIVES
from ..options import OptionError
from .config import ConfigError, TrainConfig


@runtime_checkable
class Examples(Protocol):
    """What the trainer needs of a data split: ``images``, a uint8 tensor ``(N, *data_shape)``
    (``(N, C, H, W)`` images or ``(N, T, C, H, W)`` sequences, intensities 0..255), a ``name``
    for messages, and ``len()`` (``N``). :class:`~sigmavae.data.ImageDataset` is one."""

    # Read-only properties, so that frozen dataclasses (ImageDataset, TensorExamples) match.
    @property
    def images(self) -> torch.Tensor: ...

    @property
    def name(self) -> str: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True, eq=False)
class TensorExamples:
    """A bare tensor of examples ``(N, *data_shape)`` as an :class:`Examples` (e.g. video
    clips ``(N, T, C, H, W)``, which :class:`~sigmavae.data.ImageDataset` does not take)."""

    images: torch.Tensor
    name: str = "tensor"

    def __len__(self) -> int:
        return int(self.images.shape[0])


def as_examples(data: Examples | torch.Tensor, what: str = "data") -> Examples:
    """``data`` as :class:`Examples`: a tensor is wrapped, anything with ``images`` kept."""
    if isinstance(data, torch.Tensor):
        data = TensorExamples(data)
    images = getattr(data, "images", None)
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or images.shape[0] == 0:
        raise ConfigError(f"{what}: expected a non-empty tensor of examples (N, ...) or a data "
                          f"set with one in .images, got {type(data).__name__}")
    return data


def data_shape(data: Examples) -> tuple[int, ...]:
    """The shape of one example, e.g. ``(C, H, W)`` or ``(T, C, H, W)``."""
    return tuple(int(s) for s in data.images.shape[1:])


def build_vae(config: TrainConfig, image_shape: tuple[int, ...]) -> nn.Module:
    """The model a config describes (head from the likelihood registry, network from the model
    registry) for examples of shape ``image_shape``.

    Raises:
        ConfigError: the network refuses an option or this shape (one line).
    """
    try:  # an objective that fixes the head (SVG's MSE + beta) builds it for this data
        head = OBJECTIVES.get(config.objective).head(config.kl_weight, image_shape)
    except ValueError as err:
        raise ConfigError(f"config: {err}") from None
    if head is None:
        head = likelihoods.create(config.likelihood, **config.likelihood_options)
    options: dict[str, Any] = dict(config.model_options)
    if config.latent_dim is not None:
        options["latent_dim"] = config.latent_dim
    try:
        return build_model(config.model, image_shape, head, **options)
    except OptionError as err:  # a value the network refuses for this image shape
        raise ConfigError(f"config: {err} (images {tuple(image_shape)})") from None


def load_splits(config: TrainConfig) -> tuple[ImageDataset, ImageDataset]:
    """The train and validation sets of ``config`` (subsets applied)."""
    opts = dict(config.data_options)
    train = load_dataset(config.data, "train", config.data_root, **opts)
    val = load_dataset(config.data, "val", config.data_root, **opts)
    if config.train_subset:
        train = train.subset(config.train_subset)
    if config.val_subset:
        val = val.subset(config.val_subset)
    return train, val

