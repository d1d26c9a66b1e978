"""Rebuild a trained model from a checkpoint (safely: weights_only loading)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..messages import first_line
from ..models import VAE
from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig
from .trainer import build_vae

#: Config keys a checkpoint must carry to rebuild its model (and find its data): present in every
#: checkpoint sigmavae has written; other keys default as in :class:`TrainConfig`.
REQUIRED_CONFIG_KEYS = ("data", "model", "latent_dim", "likelihood", "likelihood_options")


def load_trained(path: str | Path, map_location: str = "cpu") -> tuple[VAE, TrainConfig]:
    """The model (in eval mode) and the training config stored in checkpoint ``path``.

    Raises:
        CheckpointError: the file is not a readable sigmavae checkpoint (see
            :func:`load_checkpoint`), lacks its config or image shape, its config cannot build a
            model, or its weights do not fit the model the config describes.
        ConfigError: the stored config has unknown keys, or values of the wrong type or out of
            range (the message names the file).
    """
    state = load_checkpoint(path, map_location=map_location)
    for key in ("config", "image_shape"):
        if key not in state:
            raise CheckpointError(f"{path} is not a sigmavae training checkpoint: it has no "
                                  f"{key!r} entry")
    config = _config(state["config"], path)
    shape = _image_shape(state["image_shape"], path)
    try:
        model = build_vae(config, shape)
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        if isinstance(err, ConfigError | CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot rebuild the model from the checkpoint's config: "
                              f"{first_line(err)}") from err
    if config.precision == "64-true":  # trained in float64: evaluate in float64 too
        model = model.double()
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(_mismatch_message(path, config, model, state["model"], err)) \
            from err
    model.eval()
    return model, config


def _config(values: Any, path: str | Path) -> TrainConfig:
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: the checkpoint's 'config' is a {type(values).__name__}, "
                              "not a mapping of TrainConfig keys")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in values]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint's config lacks {', '.join(missing)} "
                              "(needed to rebuild the model); not written by sigmavae train?")
    try:
        return TrainConfig.from_dict(values, source=f"{path} (config)")
    except ConfigError as err:  # the value checks say "config: ...": name the file
        message = str(err)
        if str(path) not in message:
            message = f"{path} (config): {message.removeprefix('config: ')}"
        raise ConfigError(message) from err


def _image_shape(value: Any, path: str | Path) -> tuple[int, int, int]:
    ok = (isinstance(value, list | tuple) and len(value) == 3
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))
    if not ok:
        raise CheckpointError(f"{path}: the checkpoint's 'image_shape' must be 3 positive "
                              f"integers (channels, height, width), got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


def _mismatch_message(path: str | Path, config: TrainConfig, model: VAE,
                      weights: dict[str, torch.Tensor], err: RuntimeError) -> str:
    """One line: which entries the checkpoint's weights lack, add, or have in another shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [f"{k} (checkpoint {list(weights[k].shape)}, model {list(v.shape)})"
             for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("wrong shape", wrong)):
        if items:
            shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3
                                             else "")
            parts.append(f"{label}: {shown}")
    detail = "; ".join(parts) or first_line(err)
    return (f"{path}: the weights do not fit the model its config describes (model "
            f"{config.model!r}, likelihood {config.likelihood!r}): {detail}")
