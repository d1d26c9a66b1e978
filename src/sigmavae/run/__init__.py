"""What a run is: its typed config, the model and data it builds, its state and checkpoint file,
and loading a trained model back. Training (:mod:`sigmavae.training`) and evaluation
(:mod:`sigmavae.metrics`) both stand on this layer, and neither imports the other.

>>> config = TrainConfig(data="frey", likelihood="optimal_sigma", out="runs/frey")
>>> model, config = load_trained("runs/frey/checkpoints/last.ckpt")
"""

from .allocator import tune_cpu_allocator
from .build import Examples, TensorExamples, as_examples, build_vae, data_shape, load_splits
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, settings
from .load import load_trained
from .state import LoopState, Resumable, TrainState, restore

__all__ = [
    "CheckpointError",
    "ConfigError",
    "Examples",
    "LoopState",
    "Resumable",
    "TensorExamples",
    "TrainConfig",
    "TrainState",
    "as_examples",
    "build_vae",
    "data_shape",
    "load_checkpoint",
    "load_splits",
    "load_trained",
    "restore",
    "save_checkpoint",
    "settings",
    "tune_cpu_allocator",
]
