"""The run folder's metric files, written through Lightning Fabric's own loggers.

:class:`RunCSVLogger` is Fabric's :class:`~lightning_fabric.loggers.CSVLogger` pointed at one
named file of the run folder (``steps.csv``, ``epochs.csv``) instead of
``lightning_logs/version_N/metrics.csv``, with three changes a resumable run needs: columns
keep a fixed order (new keys are appended, not sorted in), every row is flushed as it is logged
(a crash loses no logged row; a watcher sees it at once), and a resumed run keeps the rows up
to the checkpoint's step and drops those after it (the resumed run logs them again) where
Fabric would delete the file. :func:`tensorboard_logger` is Fabric's
:class:`~lightning_fabric.loggers.TensorBoardLogger` on ``tensorboard/``, purging the events
after the resumed step.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_fabric.loggers import CSVLogger, TensorBoardLogger
from lightning_fabric.loggers.csv_logs import _ExperimentWriter
from lightning_fabric.loggers.logger import rank_zero_experiment


class _RunFileWriter(_ExperimentWriter):
    """Fabric's CSV experiment writer on the file ``path``, columns in order."""

    def __init__(self, path: Path, columns: Sequence[str], resume_step: int | None) -> None:
        self.NAME_METRICS_FILE = path.name
        self._columns = list(columns)
        self._resume_step = resume_step
        super().__init__(log_dir=str(path.parent))

    def _check_log_dir_exists(self) -> None:
        """At start: a fresh run removes a stale file; a resumed one keeps its rows up to the
        resumed step (Fabric's writer would delete the file)."""
        self.metrics_keys = list(self._columns)
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self._resume_step is None:
            path.unlink()
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), list(reader.fieldnames or [])
        if not header:
            path.unlink()
            return
        # (a row cut short by a kill mid-write has missing cells: dropped too)
        kept = [r for r in rows if None not in r.values() and r.get("step")
                and int(float(r["step"])) <= self._resume_step]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        self.metrics_keys = header + [c for c in self._columns if c not in header]

    def _record_new_keys(self) -> set[str]:
        """Append keys not seen before, in the order they were logged (Fabric sorts them)."""
        new = [k for row in self.metrics for k in row if k not in self.metrics_keys]
        new = list(dict.fromkeys(new))
        self.metrics_keys.extend(new)
        return set(new)


class RunCSVLogger(CSVLogger):
    """Fabric's CSV logger writing the file ``path`` (rank 0 only, as Fabric's loggers are).

    Args:
        path: the CSV file, e.g. ``OUT/steps.csv``.
        columns: the columns in order (keys outside them are appended as they first appear);
            ``None`` values are written as empty cells.
        resume_step: ``None`` for a fresh run (an existing file is replaced); else the step a
            run resumes from (rows with a larger ``step`` are dropped).
    """

    def __init__(self, path: str | Path, columns: Sequence[str],
                 resume_step: int | None = None) -> None:
        path = Path(path)
        super().__init__(root_dir=path.parent, name="", version="",
                         flush_logs_every_n_steps=1)
        self._path = path
        self._columns = list(columns)
        self._resume_step = resume_step

    @property
    def log_dir(self) -> str:
        return str(self._path.parent)

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._experiment = _RunFileWriter(self._path, self._columns, self._resume_step)
        return self._experiment

    def log_row(self, row: Mapping[str, Any]) -> None:
        """Append one row (it must have ``step``) and flush it to the file."""
        self.log_metrics(dict(row), step=int(row["step"]))


def tensorboard_logger(out: str | Path, resume_step: int) -> TensorBoardLogger | None:
    """Fabric's TensorBoard logger on ``OUT/tensorboard`` (events after ``resume_step`` are
    purged), or ``None`` where neither tensorboard nor tensorboardX is installed."""
    try:
        return TensorBoardLogger(root_dir=out, name="", version="tensorboard",
                                 default_hp_metric=False, purge_step=resume_step + 1)
    except ModuleNotFoundError:
        return None


def scalars(prefix: str, row: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of ``row`` as ``prefix/key`` scalars (``step``/``epoch``, text, ``None``
    left out): what TensorBoard gets of a CSV row."""
    return {f"{prefix}/{k}": float(v) for k, v in row.items()
            if k not in ("step", "epoch") and isinstance(v, int | float)
            and not isinstance(v, bool)}
