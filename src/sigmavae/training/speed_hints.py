"""The start-up speed hint's measurements, remembered per machine, model and batch shape.

A ``32-true`` run on a device with a faster path (:func:`.fastpath.fast_path`) that asks for it
(``speed_hint``: on in ``sigmavae train``, off in the library, which then times nothing and
writes no cache) says how much faster ``--precision auto`` would train it, from a few timed
steps of both on a copy of the model (:func:`.fastpath.measure_speedup`). For a heavy head
that costs seconds at every start (the 256-way categorical head: about 6 s on a 2-core CPU),
and the factor depends only on the device, the torch build, the thread count, the model's
architecture and the batch shape, not on the weights or the data. So it is measured once per
such key and kept in
``$SIGMAVAE_CACHE/speed_hints.json`` (default ``~/.cache/sigmavae/speed_hints.json``): a JSON
object ``{key: {"factor": float, "measured": ISO date, "device": str, "path": str}}``, written
through a temporary file and :func:`os.replace`. The hint is advisory: a file that cannot be
read starts empty, one that cannot be written is left alone. :func:`precision_line` is the
start-of-run line made of it (or of what ``auto`` chose).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.cache import CACHE_ENV, cache_root
from .fastpath import FastPath, cpu_info, fast_path, measure_speedup

__all__ = ["CACHE_ENV", "HINTS_FILE", "Speedup", "device_description", "hint_key",
           "hints_path", "precision_line", "speedup"]

#: The file under the cache root.
HINTS_FILE = "speed_hints.json"


@dataclass(frozen=True)
class Speedup:
    """A measured factor (auto's step speed / float32's) and whether it was timed just now."""

    factor: float
    measured_now: bool
    store: Path


def hints_path() -> Path:
    """``$SIGMAVAE_CACHE/speed_hints.json``, else ``~/.cache/sigmavae/speed_hints.json``."""
    return cache_root() / HINTS_FILE


def device_description(device: torch.device) -> str:
    """What the timing depends on in the hardware: the GPU's name, or the CPU's model name
    (Linux ``/proc/cpuinfo``, else :func:`platform.processor`) and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = cpu_info()[0] or platform.processor() or platform.machine()
    return f"{name}, {torch.get_num_threads()} threads"


def hint_key(model: nn.Module, images: torch.Tensor, path: FastPath,
             device: torch.device) -> str:
    """Hex SHA-256 of the device, the torch version, the fast path, the batch's shape and
    dtype, and the model's module tree (``repr``: layers, sizes, head)."""
    spec = {"device": device_description(device), "torch": torch.__version__,
            "path": path.label, "batch": [list(images.shape), str(images.dtype)],
            "model": repr(model)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _read(store: Path) -> dict:
    try:
        hints = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    return hints if isinstance(hints, dict) else {}


def _write(store: Path, hints: dict) -> None:
    tmp: str | None = None
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=store.parent, prefix=f".{store.name}.")
        with os.fdopen(fd, "w") as handle:
            json.dump(hints, handle, indent=1, sort_keys=True)
        os.replace(tmp, store)
    except OSError:
        # advisory: an unwritable cache costs a re-measurement next time, nothing else
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def speedup(model: nn.Module, images: torch.Tensor, path: FastPath,
            device: torch.device, store: Path | None = None) -> Speedup:
    """The factor by which ``path`` runs a training step of ``model`` on batches shaped like
    ``images`` faster than float32 on ``device``: remembered in ``store`` (default
    :func:`hints_path`) if this key was timed before, else timed now on a copy of ``model``
    (:func:`.fastpath.measure_speedup`) and remembered."""
    store = store or hints_path()
    key = hint_key(model, images, path, device)
    hints = _read(store)
    entry = hints.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("factor"), int | float):
        return Speedup(float(entry["factor"]), False, store)
    factor = measure_speedup(model, images, path, device)
    hints[key] = {"factor": factor, "measured": datetime.date.today().isoformat(),
                  "device": device_description(device), "path": path.label}
    _write(store, hints)
    return Speedup(factor, True, store)


def precision_line(precision: str, speed_hint: bool, model: nn.Module, images: torch.Tensor,
                   device: torch.device) -> str | None:
    """The start-of-run line on precision for a run asking for ``precision``: what ``auto``
    chose, or, for a ``32-true`` run with ``speed_hint`` on a device with a faster path, how
    much faster ``auto`` ran a training step of ``model`` on the batch ``images`` (timed on a
    copy, once per machine, model and batch shape: :func:`speedup`); ``None`` if there is
    nothing to say (another precision, no faster path, or not faster)."""
    path = fast_path(device)
    if precision == "auto":
        if path is None:
            return f"precision auto: 32-true (float32 is fastest on this {device.type})"
        return f"precision auto: {path.label} ({path.reason})"
    if precision != "32-true" or not speed_hint or path is None:
        return None
    measured = speedup(model, images, path, device)
    if measured.factor <= 1.05:
        return None
    when = ("timed on a copy at the start" if measured.measured_now
            else "timed on an earlier start")
    return (f"note: --precision auto ({path.label}) ran a training step of this model "
            f"{measured.factor:.1f}x as fast as 32-true on this machine ({when}; "
            f"remembered in {measured.store}); the default stays 32-true")
