"""Training: the Fabric-based loop and its callbacks, grids, curves.

What a run is (its config, model, data, checkpoint) lives one layer below, in
:mod:`sigmavae.run`; its public names are re-exported here for the trainer's users.
"""

from ..run import (
    CheckpointError,
    ConfigError,
    TrainConfig,
    TrainState,
    build_vae,
    load_checkpoint,
    load_splits,
    load_trained,
    save_checkpoint,
    tune_cpu_allocator,
)
from .optim import build_adam
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "CheckpointError",
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "build_adam",
    "build_vae",
    "load_checkpoint",
    "load_splits",
    "load_trained",
    "save_checkpoint",
    "tune_cpu_allocator",
]
