"""Training: configuration, the Fabric-based loop, checkpoints, grids and curves."""

from .allocator import tune_cpu_allocator
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .optim import build_adam
from .restore import load_trained
from .trainer import NonFiniteLossError, Trainer, build_vae, load_splits

__all__ = [
    "CheckpointError",
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "build_adam",
    "build_vae",
    "load_checkpoint",
    "load_splits",
    "load_trained",
    "save_checkpoint",
    "tune_cpu_allocator",
]
