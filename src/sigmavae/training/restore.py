"""Rebuild a trained model from a checkpoint (safely: weights_only loading)."""

from __future__ import annotations

from pathlib import Path

from ..models import VAE
from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .trainer import build_vae


def load_trained(path: str | Path, map_location: str = "cpu") -> tuple[VAE, TrainConfig]:
    """The model (in eval mode) and the training config stored in checkpoint ``path``."""
    state = load_checkpoint(path, map_location=map_location)
    try:
        config = TrainConfig.from_dict(state["config"], source=f"{path} (config)")
        shape = tuple(int(v) for v in state["image_shape"])
    except KeyError as err:
        raise CheckpointError(f"{path} lacks the entry {err}; not a sigmavae training "
                              "checkpoint") from err
    model = build_vae(config, shape)  # type: ignore[arg-type]
    model.load_state_dict(state["model"])
    model.eval()
    return model, config
