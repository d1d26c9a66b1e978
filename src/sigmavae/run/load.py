"""Rebuild a trained model from a checkpoint (safely: weights_only loading)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..messages import first_line
from .build import build_vae
from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig
from .state import TrainState

#: Config keys a checkpoint must carry to rebuild its model (and find its data): present in every
#: checkpoint sigmavae has written; other keys default as in :class:`TrainConfig`.
REQUIRED_CONFIG_KEYS = ("data", "model", "latent_dim", "likelihood", "likelihood_options")


def load_trained(
    path: str | Path, map_location: str = "cpu",
    model: nn.Module | Callable[[tuple[int, ...]], nn.Module] | None = None,
) -> tuple[nn.Module, TrainConfig]:
    """The model (in eval mode) and the training config stored in checkpoint ``path``.

    The model is rebuilt from the stored config (model and likelihood registries), or is
    ``model``: a ready module, or a function of the data shape making one (a user's own model,
    which the registries do not know), into which the weights are loaded. Both checkpoint
    formats load (:data:`~sigmavae.run.state.FORMAT` and the first releases' ``v1``).

    Raises:
        CheckpointError: the file is not a readable sigmavae checkpoint (see
            :func:`load_checkpoint`), has another format or unknown entries (see
            :meth:`TrainState.from_dict`), lacks its config or data shape, its config cannot
            build a model, or its weights do not fit the model.
        ConfigError: the stored config has unknown keys, or values of the wrong type or out of
            range (the message names the file).
    """
    state = TrainState.load(path, map_location=map_location)
    config = stored_config(state.config, path)
    shape = tuple(state.data_shape)
    try:
        if model is None:
            model = build_vae(config, shape)
        elif not isinstance(model, nn.Module):
            model = model(shape)
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        if isinstance(err, ConfigError | CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot rebuild the model from the checkpoint's config: "
                              f"{first_line(err)}") from err
    if config.precision == "64-true":  # trained in float64: evaluate in float64 too
        model = model.double()
    try:
        model.load_state_dict(state.model)
    except RuntimeError as err:
        raise CheckpointError(_mismatch_message(path, config, model, state.model, err)) \
            from err
    model.eval()
    return model, config


def stored_config(values: Any, path: str | Path) -> TrainConfig:
    """The ``config`` entry of checkpoint ``path`` as a checked :class:`TrainConfig`.

    Raises:
        CheckpointError: it is not a mapping, or lacks :data:`REQUIRED_CONFIG_KEYS`.
        ConfigError: a key or value is invalid (the message names the file).
    """
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


def _mismatch_message(path: str | Path, config: TrainConfig, model: nn.Module,
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
