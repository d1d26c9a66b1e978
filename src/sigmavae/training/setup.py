"""What the trainer builds before its loop from what it was given: Fabric for the config's
devices and precision, the splits (given, or the config's data set) and the model (given ready,
made by a function of the data shape, or the config's), checked against each other and against
the process count.

(Building from a config alone is :mod:`sigmavae.run.build`; this adds what a user of
:class:`~sigmavae.training.Trainer` may hand in instead.) :class:`RunFolderGuard` is the run
folder's side of the start: refused if it holds another run, locked while the run trains.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from lightning_fabric import Fabric
from torch import nn

from ..run.build import Examples, as_examples, build_vae, data_shape, load_splits
from ..run.config import ConfigError, TrainConfig
from ..run.folder import RunExistsError, RunFolderError, clear_run, start_check
from ..run.lock import RunLock, RunLockedError
from .fastpath import resolve_precision, training_device

#: A ready model, or a function of the data shape (one example's, e.g. ``(C, H, W)``) making one.
ModelSpec = nn.Module | Callable[[tuple[int, ...]], nn.Module]


def make_fabric(config: TrainConfig, callbacks: Sequence[Any]) -> tuple[Fabric, str, bool]:
    """Fabric for ``config``'s accelerator, devices and nodes (DDP for more than one process)
    with ``callbacks``, and the precision and channels_last setting it trains with
    (``--precision auto`` resolved: what measured fastest for the device, :mod:`.fastpath`)."""
    precision, channels_last = resolve_precision(config.precision, config.channels_last,
                                                 training_device(config.accelerator))
    fabric = Fabric(accelerator=config.accelerator, devices=config.devices,
                    num_nodes=config.num_nodes,
                    strategy="ddp" if config.devices * config.num_nodes > 1 else "auto",
                    precision=cast(Any, precision), callbacks=list(callbacks))
    return fabric, precision, channels_last


def load_examples(config: TrainConfig, train: Examples | torch.Tensor | None,
                  val: Examples | torch.Tensor | None,
                  world_size: int) -> tuple[Examples, Examples, tuple[int, ...]]:
    """The training and validation examples (``config``'s splits unless both are given) and
    the shape of one example.

    Raises:
        ConfigError: the global batch (``batch_size`` x ``world_size``) is larger than the
            training set.
    """
    if train is None or val is None:
        train, val = load_splits(config)
    train_data, val_data = as_examples(train, "train_data"), as_examples(val, "val_data")
    global_batch = config.batch_size * world_size
    if global_batch > len(train_data):
        raise ConfigError(
            f"batch_size {config.batch_size} x {world_size} process(es) = {global_batch} is "
            f"larger than the training set ({len(train_data)} images of {train_data.name}); "
            "lower --batch-size")
    return train_data, val_data, data_shape(train_data)


def make_model(spec: ModelSpec | None, config: TrainConfig, shape: tuple[int, ...]) -> nn.Module:
    """The model for examples of ``shape``: ``spec`` itself, ``spec(shape)``, or (``None``)
    ``config``'s model and likelihood (:func:`~sigmavae.run.build.build_vae`).

    Raises:
        ConfigError: the model's ``data_shape`` is not ``shape``.
    """
    if spec is None:
        return build_vae(config, shape)
    model = spec if isinstance(spec, nn.Module) else spec(shape)
    found = tuple(getattr(model, "data_shape", ()))
    if found != shape:
        raise ConfigError(f"model: its data_shape is {found}, the data's examples are {shape}")
    return model


class RunFolderGuard:
    """The run folder at the start and end of a run (a Fabric callback of the trainer's, last).

    :meth:`check` (before anything is built) refuses a folder that holds another run
    (:func:`~sigmavae.run.folder.start_check`); :meth:`claim` (once the run is ready to start,
    rank 0) takes the folder's lock (:class:`~sigmavae.run.lock.RunLock`), checks again under
    it, removes the old run's outputs where that was asked (``overwrite``) or where a run died
    before its first checkpoint, and on a resume writes the config it continues with to
    ``config.json``; ``on_teardown`` releases the lock. Errors reach every rank.

    Args:
        out: the run folder.
        overwrite: replace a run the folder holds.
    """

    def __init__(self, out: Path, overwrite: bool = False) -> None:
        self.out, self.overwrite = out, overwrite
        self.lock = RunLock(out)
        self._resume: str | Path | None = None

    def check(self, resume: str | Path | None) -> None:
        """Refuse at once a folder another process trains in (:class:`RunLockedError`) and a
        start that would replace a run without ``overwrite`` (:class:`RunExistsError`);
        removes nothing, takes no lock."""
        self._resume = resume
        self.lock.check_free()
        start_check(self.out, resume, self.overwrite)

    def claim(self, fabric: Fabric, config: TrainConfig, resumed_from: Path | None) -> None:
        """Lock the folder and make it ready (see the class docstring); every rank calls it.

        Raises:
            RunLockedError: another process trains in the folder.
            RunExistsError: it holds a run that this one would replace (since :meth:`check`).
        """
        error: tuple[str, str] | None = None
        if fabric.is_global_zero:
            try:
                self.lock.acquire()
                stale = start_check(self.out, self._resume, self.overwrite)
                if stale:
                    removed = ", ".join(clear_run(self.out, stale))
                    fabric.print(f"--overwrite: removed the previous run's {removed} from "
                                 f"{self.out}" if self.overwrite else
                                 f"{self.out} held a run that never saved a checkpoint: removed "
                                 f"its {removed}; starting it again")
                if resumed_from is not None:  # the config the run now continues with
                    (self.out / "config.json").write_text(
                        json.dumps(config.to_dict(), indent=2))
            except RunFolderError as err:
                self.lock.release()
                error = (type(err).__name__, str(err))
            except BaseException:
                self.lock.release()
                raise
        if fabric.world_size > 1:
            error = fabric.broadcast(error)
        if error is not None:
            kind = {"RunLockedError": RunLockedError}.get(error[0], RunExistsError)
            raise kind(error[1])

    def on_teardown(self, trainer: Any) -> None:
        self.lock.release()
