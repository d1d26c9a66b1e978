"""Helpers shared by the benchmark scripts: data preparation, timing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sigmavae.training import speed_hints
from sigmavae.training.fastpath import cpu_info, fast_path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def extract_cifar_jpegs(dest: Path, count: int, split: str = "train",
                        tar_path: Path | None = None) -> Path:
    """Extract the first ``count`` JPEGs of the CIFAR-10 JPEG copy (once) into ``dest``.

    ``tar_path`` defaults to ``<split>.tar`` of the copy in the project's shared data.
    """
    marker = dest / f".extracted-{split}-{count}"
    if marker.is_file():
        return dest / split
    tar_path = tar_path or SHARED_DATA / "cifar10-jpeg" / f"{split}.tar"
    if not tar_path.is_file():
        raise SystemExit(f"benchmark data not found: {tar_path} (the CIFAR-10 JPEG tar)")
    with tarfile.open(tar_path) as tar:
        members = []
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                members.append(member)
                if len(members) == count:
                    break
        tar.extractall(dest, members=members, filter="data")
    marker.touch()
    return dest / split


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels (CUDA runs asynchronously); a no-op on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], steps: int, warmup: int,
               device: torch.device | str = "cpu") -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` untimed calls (``device`` is
    synchronised before and after, so queued GPU work is counted)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - start


#: The CPU flags that change which kernels run (vector width, bf16 in hardware).
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """The :data:`SPEED_FLAGS` this CPU has (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    have = cpu_info()[1]
    return [flag for flag in SPEED_FLAGS if flag in have]


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cpu": speed_hints.device_description(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "cpu_flags": cpu_flags(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


def first_start_speed_hint(model: nn.Module, images: torch.Tensor, hints: Path,
                           device: torch.device) -> float | None:
    """Seconds of the one-off timing of ``--precision auto`` against float32 that a ``32-true``
    run does on its first start on a machine with a faster path (``training.speed_hints``),
    made here on a fresh store: ``$SIGMAVAE_CACHE`` is pointed at an emptied ``hints`` for the
    rest of this process, so a ``Trainer.fit`` after this call reads the factor back, as every
    later start does. ``images``: a training batch; ``None`` where ``device`` has no faster
    path (nothing is timed then)."""
    shutil.rmtree(hints, ignore_errors=True)
    os.environ[speed_hints.CACHE_ENV] = str(hints)
    path = fast_path(device)
    if path is None:
        return None
    start = time.perf_counter()
    speed_hints.speedup(model, images, path, device)
    return time.perf_counter() - start
