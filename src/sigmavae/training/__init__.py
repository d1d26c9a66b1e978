"""Training: configuration, the Fabric-based loop and its callbacks, checkpoints, grids, curves."""

from .allocator import tune_cpu_allocator
from .build import build_vae, load_splits
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .optim import build_adam
from .restore import load_trained
from .state import TrainState
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
