"""The run folder's metric files, written through Lightning Fabric's public logger API.

:class:`RunCSVLogger` is a Fabric :class:`~lightning_fabric.loggers.Logger` writing one named
file of the run folder (``steps.csv``, ``epochs.csv``) itself, with what a resumable run needs:
columns keep a fixed order (new keys are appended as they first appear, never sorted in), every
row is on disk as soon as it is logged (a crash loses no logged row; a watcher sees it at once),
and a resumed run keeps the rows up to the checkpoint's step and drops those after it (the
resumed run logs them again). :func:`last_row` reads a file's last row back as values.
:func:`tensorboard_logger` is Fabric's :class:`~lightning_fabric.loggers.TensorBoardLogger` on
``tensorboard/``, purging the events after the resumed step; :func:`scalars` names a CSV row's
numbers for it.
"""

from __future__ import annotations

import csv
from argparse import Namespace
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.loggers import Logger, TensorBoardLogger
from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities import rank_zero_only


class RunCSVLogger(Logger):
    """A Fabric logger writing the CSV file ``path`` (rank 0 only, as Fabric's loggers are).

    The file is opened (a stale one removed, or on resume cut back to ``resume_step``) when
    :attr:`experiment` is first read or the first row is logged. ``None`` values are written as
    empty cells (as :mod:`csv` writes them), tensors as their value.

    Args:
        path: the CSV file, e.g. ``OUT/steps.csv``.
        columns: the columns in order (keys outside them are appended as they first appear,
            and the file is rewritten with the wider header).
        resume_step: ``None`` for a fresh run (an existing file is replaced); else the step a
            run resumes from (rows with a larger ``step``, and rows cut short by a kill, are
            dropped; the file's own header is kept).
    """

    def __init__(self, path: str | Path, columns: Sequence[str],
                 resume_step: int | None = None) -> None:
        super().__init__()
        self._path = Path(path)
        self._columns = list(columns)
        self._resume_step = resume_step
        self._header: list[str] | None = None  # the file's columns, once it is opened

    @property
    def name(self) -> str:
        return self._path.stem

    @property
    def version(self) -> str:
        return ""

    @property
    def root_dir(self) -> str:
        return str(self._path.parent)

    @property
    def log_dir(self) -> str:
        return str(self._path.parent)

    @property
    @rank_zero_experiment
    def experiment(self) -> Path:
        """The CSV file, opened for this run (see the class docstring)."""
        self._opened()
        return self._path

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append one row; ``step`` (default: the row's own ``step``) fills its ``step``."""
        header = self._opened()
        row = {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}
        if step is not None:
            row["step"] = step
        new = [k for k in dict.fromkeys(row) if k not in header]
        if new:  # a wider header: the file is written again with it
            header.extend(new)
            self._write(self._read(), mode="w")
        self._write([row], mode="a")

    def log_row(self, row: Mapping[str, Any]) -> None:
        """Append one row (it must have ``step``)."""
        self.log_metrics(row, step=int(row["step"]))

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any,
                        **kwargs: Any) -> None:
        """Not kept: a run's settings are its ``config.json``."""

    def _opened(self) -> list[str]:
        """The file's columns; on the first call, the file made ready: a fresh run removes a
        stale one, a resumed one keeps its rows up to the resumed step."""
        if self._header is not None:
            return self._header
        path = self._path
        self._header = list(self._columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            return self._header
        if self._resume_step is None:
            path.unlink()
            return self._header
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), list(reader.fieldnames or [])
        if not header:
            path.unlink()
            return self._header
        # (a row cut short by a kill mid-write has missing cells: dropped too)
        kept = [r for r in rows if None not in r.values() and r.get("step")
                and int(float(r["step"])) <= self._resume_step]
        self._header = header + [c for c in self._header if c not in header]
        self._write(kept, mode="w")
        return self._header

    def _read(self) -> list[dict[str, str]]:
        if not self._path.is_file():
            return []
        with self._path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        """Write ``rows`` under the current header: ``"w"`` the whole file (header first),
        ``"a"`` appended (with the header if the file is new)."""
        fresh = mode == "w" or not self._path.is_file()
        with self._path.open("w" if fresh else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._opened())
            if fresh:
                writer.writeheader()
            writer.writerows(rows)


def last_row(path: str | Path) -> dict[str, Any] | None:
    """The last row of the CSV file ``path`` as the values it was written from (int, float,
    ``None`` for an empty cell, or the text); ``None`` if there is no such file or no row."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: _value(cell) for key, cell in rows[-1].items()} if rows else None


def _value(cell: str) -> Any:
    if cell == "":
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def tensorboard_logger(out: str | Path, resume_step: int) -> TensorBoardLogger | None:
    """Fabric's TensorBoard logger on ``OUT/tensorboard`` (events after ``resume_step`` are
    purged), or ``None`` where neither tensorboard nor tensorboardX is installed."""
    try:
        return TensorBoardLogger(root_dir=out, name="", version="tensorboard",
                                 default_hp_metric=False, purge_step=resume_step + 1)
    except ModuleNotFoundError:
        return None


def scalars(kind: str, row: Mapping[str, Any]) -> dict[str, float]:
    """What TensorBoard gets of a CSV row: its numbers (``step``/``epoch``, text, ``None``
    left out) as tags without doubled names. ``kind="step"``, a ``steps.csv`` row:
    ``train/<column less its train_>`` (``train/loss``, ``train/neg_elbo``, ``train/sigma``,
    ...). ``kind="epoch"``, an ``epochs.csv`` row: ``val/<column less its val_>`` for the
    validation (``val/neg_elbo``, ``val/bits_per_dim``, ``val/seconds``), ``epoch/<column>``
    for the rest (``epoch/train_loss``, ``epoch/sigma``, ``epoch/seconds``). The CSV columns
    keep their names."""
    if kind not in ("step", "epoch"):
        raise ValueError(f"scalars: kind must be 'step' or 'epoch', got {kind!r}")
    out = {}
    for key, value in row.items():
        if key in ("step", "epoch") or not isinstance(value, int | float) or isinstance(
                value, bool):
            continue
        if kind == "step":
            tag = f"train/{key.removeprefix('train_')}"
        elif key.startswith("val_"):
            tag = f"val/{key.removeprefix('val_')}"
        else:
            tag = f"epoch/{key}"
        out[tag] = float(value)
    return out
