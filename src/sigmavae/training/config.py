"""The training configuration: one validated dataclass, loadable from YAML, overridable by CLI."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..messages import first_line


class ConfigError(ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, bad value)."""


#: Fabric precisions the trainer supports (the likelihood is float32 under the mixed ones).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "64-true")
#: Fabric accelerators a run may ask for.
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")


@dataclass
class TrainConfig:
    """Everything a training run needs. Units: ``lr`` per Adam step, sizes in examples."""

    # data
    data: str = "frey"
    data_root: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    train_subset: int | None = None  # use only the first N training examples
    val_subset: int | None = None
    # model and likelihood
    model: str = "conv"
    # conv: size of z (20 if null); hierarchical: latent channels of each of its layers (8)
    latent_dim: int | None = None
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. width, layers, stages
    likelihood: str = "optimal_sigma"
    likelihood_options: dict[str, Any] = field(default_factory=dict)
    beta: float = 1.0  # KL weight in the training loss only (1 = the ELBO)
    # optimisation (paper, App. B: Adam 1e-3, batch 128, 10 epochs)
    epochs: int = 10
    batch_size: int = 128
    drop_last: bool = False  # drop each epoch's partial last batch (one batch shape: compile once)
    lr: float = 1e-3
    grad_clip: float | None = None
    seed: int = 0
    # engine
    accelerator: str = "auto"  # "cpu", "cuda", "auto"
    devices: int = 1
    num_nodes: int = 1
    # Fabric precision: "32-true", "bf16-mixed", "16-mixed" (CUDA; a CPU gets bf16-mixed),
    # "64-true" (float64 throughout: for exactness checks, see tests/training)
    precision: str = "32-true"
    data_on_device: bool = True
    channels_last: bool = False  # NHWC memory layout for the conv layers (measure: see benchmarks)
    compile: bool = False  # torch.compile the model (first steps compile; measure before use)
    tune_malloc: bool = True  # on CPU: keep activation blocks in glibc's heap (training.allocator)
    fused_adam: bool = True  # torch's fused Adam kernel where available (training.optim)
    # outputs
    out: str = "runs/sigmavae"
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int | None = None  # besides the end of every epoch
    keep_epoch_checkpoints: bool = False
    num_samples: int = 64  # images in the sample grid
    progress: bool = True
    # reliability
    max_nonfinite_steps: int = 20  # consecutive skipped steps before the run stops

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "devices", "num_nodes",
                     "log_every_n_steps", "num_samples", "max_nonfinite_steps"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"config: {name} must be >= 1, got {value}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"config: precision must be one of {list(PRECISIONS)}, got "
                              f"{self.precision!r}")
        if not self.lr > 0:
            raise ConfigError(f"config: lr must be > 0, got {self.lr}")
        if self.beta < 0:
            raise ConfigError(f"config: beta must be >= 0, got {self.beta}")
        for name in ("latent_dim", "train_subset", "val_subset", "checkpoint_every_n_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"config: {name} must be >= 1 or null, got {value}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"config: seed must be in 0..2^32-1, got {self.seed}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"config: grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.accelerator not in ACCELERATORS:
            raise ConfigError(f"config: accelerator must be one of {list(ACCELERATORS)}, got "
                              f"{self.accelerator!r}")
        self._check_components()

    def _check_components(self) -> None:
        """The data set, head and model names and options, before any data is read or file
        written: a wrong one is a one-line ConfigError, not a traceback mid-run."""
        from ..data import dataset_names
        from ..likelihoods import create
        from ..models import check_model_options
        from ..options import OptionError

        if self.data not in dataset_names():
            raise ConfigError(f"config: data must be one of {dataset_names()}, got "
                              f"{self.data!r}")
        try:
            create(self.likelihood, **self.likelihood_options)  # cheap: a head is small
            check_model_options(self.model, self.model_options)
        except OptionError as err:
            raise ConfigError(f"config: {err}") from None

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping, rejecting unknown keys and values of the wrong type."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got "
                              f"{type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        checked = {k: _coerce(v, hints[k], f"{source}: {k}") for k, v in values.items()}
        return cls(**checked)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(err, "problem", None) or first_line(err)
            raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} cannot be read as text: {err}") from None
        return cls.from_dict(values, source=str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        return self.from_dict({**self.to_dict(), **changes})


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint (int, float, str, bool, dict, ``X | None``)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value
