"""The training configuration: one typed dataclass, each field declared once.

A field's type, its constraints and its help text sit together in its annotation::

    epochs: Annotated[int, Field(ge=1, description="passes over the training set")] = 10

and that one declaration is everything the other front ends use:

* YAML files (:meth:`TrainConfig.from_yaml`): the keys are the field names, the values read
  as YAML 1.2 (:mod:`sigmavae.yaml12`: ``lr: 2e-3`` is a number);
* ``sigmavae train``: :mod:`sigmavae.cli` makes one flag per field from :func:`settings`
  (``--epochs N``; ``--drop-last`` / ``--no-drop-last`` for a boolean; ``--likelihood-option
  KEY=VALUE``, repeatable, for a mapping), with the field's description as its help;
* the checks: every value is validated by `pydantic <https://docs.pydantic.dev>`_ against the
  annotation, strictly (``"3"`` is not an integer, ``1`` is not ``true``; an integer is a valid
  number), the same checker :mod:`sigmavae.options` uses for the heads', models' and data
  sets' options. A bad value is one :class:`ConfigError` line naming the key, what it takes and
  what it got.

The data set, head and model names and their option keys are checked against the registries
when the config is made, so a wrong one fails before any data is read or file written.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from .. import yaml12
from ..likelihoods import DEFAULT_HEAD
from ..messages import first_line
from ..objective import OBJECTIVES, ObjectiveVariant


class ConfigError(ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, bad value)."""


Precision = Literal["32-true", "bf16-mixed", "16-mixed", "64-true", "auto"]
Accelerator = Literal["auto", "cpu", "cuda", "gpu", "mps"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune"]
#: Fabric precisions the trainer supports (the likelihood is float32 under the mixed ones).
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
#: Fabric accelerators a run may ask for.
ACCELERATORS: tuple[str, ...] = typing.get_args(Accelerator)


@dataclass(frozen=True)
class Registered:
    """Annotation marker: the field names an entry of a registry (listed in ``--help``)."""

    names: Callable[[], list[str]]


def _data_names() -> list[str]:
    from ..data import dataset_names

    return dataset_names()


def _likelihood_names() -> list[str]:
    from ..likelihoods import names

    return names()


def _model_names() -> list[str]:
    from ..models import model_names

    return model_names()


def _objective_names() -> list[str]:
    return OBJECTIVES.names()


def _objective(name: str) -> ObjectiveVariant:
    """The registered objective (its name is checked with the config's other values)."""
    return OBJECTIVES.get(name)


@dataclass
class TrainConfig:
    """Everything a training run needs. Units: ``lr`` per Adam step, sizes in examples."""

    # -- data
    data: Annotated[str, Field(description="data set"), Registered(_data_names)] = "frey"
    data_root: Annotated[str | None, Field(
        description="where the data set's files are (null: the set's default place; see "
                    "sigmavae data NAME)")] = None
    data_options: Annotated[dict[str, Any], Field(
        description="data set option, e.g. image_size=32")] = field(default_factory=dict)
    train_subset: Annotated[int | None, Field(
        ge=1, description="use only the first N training images")] = None
    val_subset: Annotated[int | None, Field(
        ge=1, description="use only the first N validation images")] = None
    # -- model and likelihood
    model: Annotated[str, Field(description="network"), Registered(_model_names)] = "conv"
    latent_dim: Annotated[int | None, Field(
        ge=1, description="conv: size of z (null: 20); hierarchical: latent channels of each "
                          "of its layers (null: 8)")] = None
    model_options: Annotated[dict[str, Any], Field(
        description="network option, e.g. width=32 or layers=6 for hierarchical")] = field(
        default_factory=dict)
    likelihood: Annotated[str, Field(description="decoder likelihood head"),
                          Registered(_likelihood_names)] = DEFAULT_HEAD
    likelihood_options: Annotated[dict[str, Any], Field(
        description="option of the head (a keyword of its constructor), e.g. beta=0.006")] = field(
        default_factory=dict)
    objective: Annotated[str, Field(
        description="training objective (sigmavae.objective.OBJECTIVES); original: SVG's code, "
                    "per example the squared error over the predicted pixels divided by the "
                    "pixels per frame plus beta * KL (beta default 1e-4), which is the "
                    "fixed-sigma head with sigma = sqrt(beta C H W / 2): that head is built and "
                    "its ELBO reported"), Registered(_objective_names)] = "elbo"
    beta: Annotated[float | None, Field(
        ge=0, description="KL weight in the training loss only (null: 1 = the ELBO; 1e-4 with "
                          "objective original)")] = None
    # -- optimisation (paper, App. B: Adam 1e-3, batch 128, 10 epochs)
    epochs: Annotated[int, Field(ge=1, description="passes over the training set")] = 10
    batch_size: Annotated[int, Field(ge=1, description="images per step and process")] = 128
    val_batch_size: Annotated[int | None, Field(
        ge=1, description="images per validation batch and process (null: batch_size, whose "
                          "kernels the training steps have already prepared)")] = None
    drop_last: Annotated[bool, Field(
        description="drop each epoch's partial last batch (one batch shape: with --compile, "
                    "no recompile)")] = False
    lr: Annotated[float, Field(gt=0, description="Adam learning rate")] = 1e-3
    grad_clip: Annotated[float | None, Field(
        gt=0, description="clip the gradient norm to this value (null: no clipping)")] = None
    seed: Annotated[int, Field(
        ge=0, le=2**32 - 1, description="seed of the initialisation, batches and noise")] = 0
    # -- engine
    accelerator: Annotated[Accelerator, Field(description="Fabric accelerator")] = "auto"
    devices: Annotated[int, Field(ge=1, description="processes per node")] = 1
    num_nodes: Annotated[int, Field(ge=1, description="machines")] = 1
    precision: Annotated[Precision, Field(
        description="Fabric precision: bf16-mixed, 16-mixed (CUDA; a CPU gets bf16-mixed), "
                    "64-true (float64 throughout, for exactness checks), auto (what measured "
                    "fastest for the device: bf16-mixed + channels_last on CPUs with AMX or "
                    "avx512_bf16, bf16-mixed on a GPU, else 32-true; training.fastpath)")] \
        = "32-true"
    speed_hint: Annotated[bool | None, Field(
        description="at 32-true on a device with a faster path, time a few steps of both at "
                    "the start (remembered in ~/.cache/sigmavae) and print one line when auto "
                    "would be faster; null: off in the library, on in sigmavae train")] = None
    data_on_device: Annotated[bool, Field(
        description="hold the data set on the training device")] = True
    channels_last: Annotated[bool, Field(
        description="NHWC memory layout for the conv layers (measure: see benchmarks)")] = False
    compile: Annotated[bool, Field(
        description="torch.compile the model (the first steps compile; measure before use)")] \
        = False
    compile_mode: Annotated[CompileMode, Field(
        description="torch.compile mode with --compile: default, reduce-overhead (CUDA graphs "
                    "on a GPU: for launch-bound small models; with --drop-last and the data on "
                    "the device), max-autotune")] = "default"
    tune_malloc: Annotated[bool | None, Field(
        description="on a CPU, keep activation blocks in glibc's heap (run.allocator; "
                    "process-wide, for the rest of the process); null: off in the library, on "
                    "in sigmavae train")] = None
    fused_adam: Annotated[bool, Field(
        description="torch's fused Adam kernel where available (training.optim)")] = True
    # -- outputs
    out: Annotated[str, Field(description="output folder")] = "runs/sigmavae"
    log_every_n_steps: Annotated[int, Field(
        ge=1, description="steps between rows of steps.csv and TensorBoard")] = 10
    checkpoint_every_n_steps: Annotated[int | None, Field(
        ge=1, description="also checkpoint every N steps (besides the end of every epoch)")] \
        = None
    keep_epoch_checkpoints: Annotated[bool, Field(
        description="also keep checkpoints/epoch_XXXX.ckpt of every epoch")] = False
    num_samples: Annotated[int, Field(ge=1, description="images in the sample grid")] = 64
    progress: Annotated[bool, Field(description="show a progress bar")] = True
    # -- reliability
    max_nonfinite_steps: Annotated[int, Field(
        ge=1, description="consecutive skipped (non-finite) steps before the run stops")] = 20

    def __post_init__(self) -> None:
        for name, value in _check_values(vars(self), "config").items():
            setattr(self, name, value)  # ints given for floats become floats
        implied = _objective(self.objective).implied_head
        if implied is not None:  # the objective fixes the head: a config may not name another
            if self.likelihood not in (DEFAULT_HEAD, "fixed_sigma") or self.likelihood_options:
                raise ConfigError(
                    f"config: objective {self.objective} fixes the likelihood itself "
                    f"({OBJECTIVES.summary(self.objective)}); leave likelihood unset "
                    f"(got {self.likelihood!r} {self.likelihood_options or ''}) or use "
                    "objective elbo")
            self.likelihood = "fixed_sigma"

    @property
    def kl_weight(self) -> float:
        """The beta of the training loss: ``beta``, or the objective's default (1 for the ELBO,
        SVG's 1e-4 for the original objective)."""
        if self.beta is not None:
            return self.beta
        return _objective(self.objective).default_beta

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (what ``config.json`` and checkpoints hold)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping, rejecting unknown keys and bad values (messages name
        ``source``: the file, or ``config``)."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got "
                              f"{type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        defaults = {s.name: s.default_value() for s in settings()}
        return cls(**_check_values({**defaults, **values}, source))

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Load a YAML mapping of field names to values (any subset; the rest default), read as
        YAML 1.2 (:func:`sigmavae.yaml12.load`: ``2e-3`` is a number, ``yes`` a string)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml12.load(path.read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(err, "problem", None) or first_line(err)
            raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} cannot be read as text: {err}") from None
        return cls.from_dict(values, source=str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied, checked like a new config."""
        return self.from_dict({**self.to_dict(), **changes})

    def with_command_defaults(self) -> TrainConfig:
        """This config with :data:`COMMAND_DEFAULTS` for the keys it leaves null: what
        ``sigmavae train`` and ``sigmavae experiment`` run with (the library leaves them off)."""
        unset = {k: v for k, v in COMMAND_DEFAULTS.items() if getattr(self, k) is None}
        return self.replace(**unset) if unset else self


#: What the command line uses for a key left null where the library uses off: the process-wide
#: allocator setting and the start-up precision timing (it writes ~/.cache/sigmavae). A library
#: user's ``Trainer(TrainConfig(...))`` changes nothing outside its run unless asked.
COMMAND_DEFAULTS: dict[str, Any] = {"tune_malloc": True, "speed_hint": True}


# -- the fields as data: what the CLI builds its flags from ---------------------------------------
@dataclass(frozen=True)
class Setting:
    """One :class:`TrainConfig` field: its name, type, default, constraints and help."""

    name: str
    hint: Any  #: the full annotation (``Annotated[...]``), what pydantic validates
    kind: type  #: ``bool``, ``int``, ``float``, ``str`` or ``dict``
    optional: bool  #: ``None`` (YAML ``null``) is allowed
    choices: tuple[str, ...] | None  #: the allowed strings of a ``Literal`` field
    registered: Registered | None  #: a registry the value is a name of
    help: str
    constraints: dict[str, Any]  #: ``ge``, ``gt``, ``le`` bounds
    default: Any
    default_factory: Callable[[], Any] | None

    def default_value(self) -> Any:
        """The default (a fresh one for mutable defaults)."""
        return self.default_factory() if self.default_factory is not None else self.default

    def names(self) -> list[str] | None:
        """The valid values where the field has a fixed or registered set of them."""
        if self.choices is not None:
            return list(self.choices)
        return self.registered.names() if self.registered is not None else None

    def check(self, value: Any, source: str) -> Any:
        """``value`` validated (ints made floats where a number is asked, paths made strings
        where a string is), or ConfigError."""
        if self.kind is str and isinstance(value, os.PathLike):
            value = os.fspath(value)
        try:
            return _adapter(self.name).validate_python(value, strict=True)
        except ValidationError as err:
            raise ConfigError(f"{source}: {self.name} must be {self._expected(err)}, got "
                              f"{value!r}") from None

    def _expected(self, err: ValidationError) -> str:
        kind = err.errors()[0]["type"]
        bounds = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le"}
        if kind in bounds and {"ge", "le"} <= set(self.constraints):
            text = (f"in {_number(self.constraints['ge'])}.."
                    f"{_number(self.constraints['le'])}")
        elif kind in bounds:
            bound = bounds[kind]
            text = f"{_SYMBOLS[bound]} {_number(self.constraints[bound])}"
        elif self.choices is not None and kind == "literal_error":
            text = f"one of {list(self.choices)}"
        else:
            text = _TYPE_WORDS[self.kind]
        return f"{text} or null" if self.optional else text


_SYMBOLS = {"ge": ">=", "gt": ">", "le": "<="}
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               dict: "a mapping"}


def _number(value: float) -> str:
    """A bound as people write it: ``0`` not ``0.0``, ``2^32-1`` not ``4294967295``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value > 2**16 and math.log2(value + 1).is_integer():
        return f"2^{int(math.log2(value + 1))}-1"
    return str(value)


@functools.cache
def settings() -> tuple[Setting, ...]:
    """Every :class:`TrainConfig` field as a :class:`Setting`, in declaration order."""
    hints = typing.get_type_hints(TrainConfig, include_extras=True)
    out = []
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        base, *extras = typing.get_args(hint)
        info = next(e for e in extras if isinstance(e, FieldInfo))
        registered = next((e for e in extras if isinstance(e, Registered)), None)
        union = typing.get_origin(base) in (typing.Union, types.UnionType)
        members = typing.get_args(base) if union else (base,)
        optional = type(None) in members
        inner = next(m for m in members if m is not type(None))
        if typing.get_origin(inner) is Literal:
            kind, choices = str, tuple(typing.get_args(inner))
        else:
            kind, choices = typing.get_origin(inner) or inner, None
        constraints = {k: getattr(m, k) for m in info.metadata for k in ("ge", "gt", "le")
                       if getattr(m, k, None) is not None}
        factory = None if f.default_factory is dataclasses.MISSING else f.default_factory
        out.append(Setting(
            name=f.name, hint=hint, kind=kind, optional=optional, choices=choices,
            registered=registered, help=info.description or "", constraints=constraints,
            default=None if f.default is dataclasses.MISSING else f.default,
            default_factory=factory))
    return tuple(out)


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(next(s.hint for s in settings() if s.name == name))


def _check_values(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Every field of ``values`` (all of them) validated, then the data set, head and model
    names and options: a wrong one is a one-line ConfigError naming ``source``, before any
    data is read or file written."""
    checked = {s.name: s.check(values[s.name], source) for s in settings()}
    _check_components(checked, source)
    return checked


def _check_components(values: dict[str, Any], source: str) -> None:
    """The data set, head and model names, then their options (keys and value types), against
    the registries and the factories' signatures; nothing is read."""
    from ..data import DataError, check_dataset_options
    from ..likelihoods import create
    from ..models import check_model_options
    from ..options import OptionError

    for key, names in (("data", _data_names()), ("objective", _objective_names())):
        if values[key] not in names:
            raise ConfigError(f"{source}: {key} must be one of {names}, got {values[key]!r}")
    try:
        if _objective(values["objective"]).implied_head is None:  # else: built from the data
            create(values["likelihood"], **values["likelihood_options"])  # a head is small
        check_model_options(values["model"], values["model_options"])
        check_dataset_options(values["data"], values["data_options"])
    except (OptionError, DataError) as err:
        raise ConfigError(f"{source}: {err}") from None
