"""What a run is: its typed config, the model and data it builds, its state and checkpoint file,
and loading a trained model back. Training (:mod:`sigmavae.training`) and evaluation
(:mod:`sigmavae.metrics`) both stand on this layer, and neither imports the other.

>>> config = TrainConfig(data="frey", likelihood="optimal_sigma", out="runs/frey")
>>> model, config = load_trained("runs/frey/checkpoints/last.ckpt")
>>> export_checkpoint("runs/frey", "runs/frey/export")  # weights-only, to share
>>> model, config = load_pretrained("runs/frey/export")
"""

from .allocator import tune_cpu_allocator
from .build import Examples, TensorExamples, as_examples, build_vae, data_shape, load_splits
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, settings
from .export import (
    ExportError,
    export_checkpoint,
    load_model,
    load_pretrained,
    save_pretrained,
)
from .folder import RunExistsError, RunFolderError, clear_run, next_version, run_outputs
from .load import load_trained
from .lock import RunLock, RunLockedError
from .resume import CHANGEABLE_ON_RESUME, ResumeConfigError
from .saved import SavedRun
from .state import LoopState, Resumable, TrainState, restore
from .stopping import StopRequested, StopSignals

__all__ = [
    "CHANGEABLE_ON_RESUME",
    "CheckpointError",
    "ConfigError",
    "Examples",
    "ExportError",
    "LoopState",
    "Resumable",
    "ResumeConfigError",
    "RunExistsError",
    "RunFolderError",
    "RunLock",
    "RunLockedError",
    "SavedRun",
    "StopRequested",
    "StopSignals",
    "TensorExamples",
    "TrainConfig",
    "TrainState",
    "as_examples",
    "build_vae",
    "clear_run",
    "data_shape",
    "export_checkpoint",
    "load_checkpoint",
    "load_model",
    "load_pretrained",
    "load_splits",
    "load_trained",
    "next_version",
    "restore",
    "run_outputs",
    "save_checkpoint",
    "save_pretrained",
    "settings",
    "tune_cpu_allocator",
]
