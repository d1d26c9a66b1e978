"""Registry of data sets: name -> loader function, plus :func:`load_dataset`.

A new data set is one loader function and one registration::

    @register_dataset("mine", "One paragraph: source, native size, splits, files under root.")
    def load_mine(split, root, *, image_size, download, val_fraction, seed, my_option=1):
        ...
        return ImageDataset(images=..., name="mine", split=split)

``split`` is already validated, ``root`` is a :class:`~pathlib.Path` or ``None``; set-specific
keyword-only options (``my_option``) are passed through from :func:`load_dataset`'s ``**options``
and unknown options are rejected with a list of the valid ones. Option values are checked
against the loader's annotations (:func:`sigmavae.options.check_value`, the checker the heads and
models use too), so ``crop="abc"`` for a ``crop: bool`` option is a :class:`DataOptionError`
naming the option and the expected type, not a silently truthy string.

The names live in :data:`DATASETS`, the :class:`~sigmavae.registry.Registry` the heads, models and
metrics use too; the built-in loaders register themselves when a name is first looked up.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..options import OptionError, check_value
from ..registry import Registry
from .dataset import SPLITS, ImageDataset
from .errors import DataOptionError, EmptyDatasetError, SplitError, UnknownDatasetError
from .splits import check_fraction
from .transforms import check_image_size

Loader = Callable[..., ImageDataset]

#: Arguments every loader receives (keyword-only except ``split`` and ``root``).
COMMON_ARGUMENTS = ("split", "root", "image_size", "download", "val_fraction", "seed")


@dataclass(frozen=True)
class DatasetSpec:
    """One registered data set: its ``name``, ``loader`` and a one-paragraph ``description``."""

    name: str
    loader: Loader
    description: str

    @property
    def options(self) -> tuple[str, ...]:
        """Names of the set-specific keyword options the loader accepts."""
        params = inspect.signature(self.loader).parameters
        return tuple(p for p in params if p not in COMMON_ARGUMENTS)


def check_option_types(spec: DatasetSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Check each option's value against the loader's annotation (with pydantic, strictly: see
    :func:`sigmavae.options.check_value`); return the options, strings made paths where a path
    is expected.

    Raises:
        DataOptionError: "``name``: option ``crop`` must be True or False, got 'abc' (str)".
    """
    try:
        hints = typing.get_type_hints(spec.loader)
    except Exception:  # unresolvable annotations in a user's loader: let the loader check
        return options
    try:
        return {name: check_value(spec.name, name, value, hints.get(name))
                for name, value in options.items()}
    except OptionError as err:
        raise DataOptionError(str(err)) from None


def _load_builtins() -> None:
    importlib.import_module("sigmavae.data.builtin")


#: The registered data sets (the shared :class:`~sigmavae.registry.Registry`).
DATASETS: Registry[DatasetSpec] = Registry("data set", load_builtins=_load_builtins)


def register_dataset(name: str, description: str) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader`` under ``name`` (which must be new)."""

    def wrap(loader: Loader) -> Loader:
        if name in DATASETS and DATASETS.get(name).loader is loader:
            return loader  # the same loader again (a module imported twice): nothing to do
        spec = DatasetSpec(name=name, loader=loader, description=" ".join(description.split()))
        add = DATASETS.register(name, spec.description)  # a bad name fails here, as itself
        try:
            add(spec)
        except ValueError:  # another loader holds the name
            raise ValueError(f"data set {name!r} is already registered") from None
        return loader

    return wrap


def dataset_names() -> list[str]:
    """Sorted names of all registered data sets."""
    return DATASETS.names()


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; :class:`UnknownDatasetError` lists valid names."""
    if name not in DATASETS:
        raise UnknownDatasetError(
            f"unknown data set {name!r}; valid names: {', '.join(DATASETS.names())}"
        )
    return DATASETS.get(name)


def describe_dataset(name: str) -> str:
    """One paragraph: source, native size, splits, what ``root`` must contain, how to get files."""
    spec = get_spec(name)
    opts = ", ".join(spec.options) or "none"
    return f"{spec.description} Options: {opts}."


def load_dataset(
    name: str,
    split: str,
    root: str | Path | None = None,
    *,
    image_size: int | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    **options: Any,
) -> ImageDataset:
    """Load one split of a registered data set, decoded into memory.

    Args:
        name: one of :func:`dataset_names` (``"celeba"``, ``"cifar10"``, ``"folder"``, ``"frey"``,
            ``"mnist"``, ``"npz"``, ``"svhn"``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        root: where the files are (see :func:`describe_dataset`); ``None`` uses the set's default
            (the packaged file for ``frey``, ``$SIGMAVAE_DATA`` or ``~/.cache/sigmavae/data`` for
            the torchvision sets).
        image_size: output side in pixels (square), or ``None`` for the set's default size.
        download: let torchvision download missing files (needs internet).
        val_fraction: fraction of the official train split carved into ``val`` where the set has
            no official validation split (the rest is ``train``).
        seed: seed of that carving (``torch.randperm`` on a CPU generator).
        **options: set-specific options (see :func:`describe_dataset`).

    Returns:
        An :class:`ImageDataset` whose ``images`` are uint8 ``(N, C, H, W)`` on the CPU (video
        sets: sequences ``(N, T, C, H, W)``, possibly memory-mapped).

    Raises:
        DataError: one of its subclasses UnknownDatasetError, SplitError, DataOptionError,
            DataNotFoundError, DataFormatError, EmptyDatasetError.
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise SplitError(f"unknown split {split!r} for {name}; valid splits: {', '.join(SPLITS)}")
    image_size, val_fraction = _check_arguments(spec, image_size, download, val_fraction, seed,
                                                options)
    root_path = None if root is None else Path(root).expanduser()
    data = spec.loader(
        split,
        root_path,
        image_size=image_size,
        download=download,
        val_fraction=val_fraction,
        seed=seed,
        **options,
    )
    if len(data) == 0:
        raise EmptyDatasetError(f"{data.name}: split {split!r} is empty")
    return data


def check_dataset_options(name: str, options: dict[str, Any]) -> None:
    """Check ``load_dataset(name, split, root, **options)``'s name and options without opening
    a file: what a training config does before any data is read.

    ``options`` may hold the common keywords (``image_size``, ``download``, ``val_fraction``,
    ``seed``) and the set's own options.

    Raises:
        UnknownDatasetError, DataOptionError: the same one-line errors :func:`load_dataset` gives.
    """
    spec = get_spec(name)
    own = dict(options)
    common = {key: own.pop(key) for key in COMMON_ARGUMENTS[2:] if key in own}
    defaults = {"image_size": None, "download": False, "val_fraction": 0.1, "seed": 0}
    values = {**defaults, **common}
    _check_arguments(spec, values["image_size"], values["download"], values["val_fraction"],
                     values["seed"], own)


def _check_arguments(spec: DatasetSpec, image_size: Any, download: Any, val_fraction: Any,
                     seed: Any, options: dict[str, Any]) -> tuple[int | None, float]:
    """The common arguments (returned normalised: ``image_size``, ``val_fraction``) and the
    set's own options, checked in the order :func:`load_dataset` always has."""
    image_size = check_image_size(image_size)
    val_fraction = check_fraction("val_fraction", val_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataOptionError(f"seed must be an integer, got {seed!r}")
    if not isinstance(download, bool):
        raise DataOptionError(f"download must be True or False, got {download!r}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) or "none"
        raise DataOptionError(
            f"unknown option(s) {', '.join(unknown)} for data set {spec.name!r}; "
            f"valid options: {valid}"
        )
    check_option_types(spec, options)
    return image_size, val_fraction
