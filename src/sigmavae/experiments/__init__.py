"""The paper's experiments (``sigmavae experiment NAME``): runs, reports beside the published
numbers (``published.csv``), and a verdict per claim (:data:`CLAIMS`)."""

from . import video  # noqa: F401  (registers the video experiments)
from .claims import CLAIMS, Claim
from .definitions import EXPERIMENTS, Experiment
from .driver import run_experiments
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
