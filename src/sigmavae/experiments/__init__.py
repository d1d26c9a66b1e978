"""The paper's experiments (``sigmavae experiment NAME``): runs, reports beside the published
numbers (``published.csv``), and a verdict per claim (:data:`CLAIMS`)."""

# one module per experiment, each registering itself: importing them fills EXPERIMENTS
from . import (  # noqa: F401
    beta_sweep,
    decoders,
    discretized,
    mutual_info,
    variance,
    video,
)
from .claims import CLAIMS, Claim
from .driver import run_experiments
from .framework import EXPERIMENTS, Experiment
from .presets import PRESETS, DataChoice, ExperimentError, Preset
from .published import PublishedValue, published, published_values

__all__ = [
    "CLAIMS",
    "EXPERIMENTS",
    "PRESETS",
    "Claim",
    "DataChoice",
    "Experiment",
    "ExperimentError",
    "Preset",
    "PublishedValue",
    "published",
    "published_values",
    "run_experiments",
]
