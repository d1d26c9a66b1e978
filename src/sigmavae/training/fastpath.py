"""``--precision auto``: the fastest training precision and memory layout for the device.

What measured fastest (``benchmarks/throughput.py``, the small conv VAE at batch 128):

* a CPU that computes bf16 in hardware (AMX or avx512_bf16): bf16 autocast + channels_last,
  1.8-2.2x float32;
* a CPU without it (e.g. AVX2 only): float32; bf16 is emulated there (about 15x slower) and
  channels_last alone was slower too;
* a CUDA GPU: bf16 autocast (fp16 with a loss scaler where the GPU has no bf16).

The likelihood and the KL stay float32 under every precision (``objective.likelihood`` upcasts
the decoder's output). The default precision stays ``32-true``; :func:`measure_speedup` times a few
steps of both on the run's own model and data, so that ``train`` can say what auto would give.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from .. import objective
from ..likelihoods.distributed import local_statistics

#: ``/proc/cpuinfo`` flags of CPUs with bf16 arithmetic in hardware.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str | None, frozenset[str]]:
    """The CPU's model name and flags, from the first processor of Linux ``/proc/cpuinfo``
    (``(None, frozenset())`` where that cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None, frozenset()
    name: str | None = None
    flags: frozenset[str] = frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name is None:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return name, flags


def native_cpu_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or avx512_bf16; read from Linux
    ``/proc/cpuinfo``, ``False`` where that cannot be read)."""
    return any(flag in cpu_info(cpuinfo)[1] for flag in NATIVE_BF16_FLAGS)


@dataclass(frozen=True)
class FastPath:
    """A precision and memory layout faster than float32 on some device, and why."""

    precision: str
    channels_last: bool
    reason: str

    @property
    def label(self) -> str:
        return self.precision + (" + channels_last" if self.channels_last else "")


def fast_path(device: torch.device) -> FastPath | None:
    """What ``--precision auto`` trains with on ``device``; ``None`` where float32 is fastest."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return FastPath("bf16-mixed", False, "a CUDA GPU with bf16")
        return FastPath("16-mixed", False, "a CUDA GPU without bf16 (fp16 with a loss scaler)")
    if device.type == "cpu" and native_cpu_bf16():
        return FastPath("bf16-mixed", True, "this CPU computes bf16 in hardware (AMX or "
                                            "avx512_bf16)")
    return None


def training_device(accelerator: str) -> torch.device:
    """The device type a Fabric ``accelerator`` setting trains on (before Fabric starts)."""
    if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    if accelerator == "mps":
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, channels_last: bool,
                      device: torch.device) -> tuple[str, bool]:
    """The Fabric precision and channels_last setting a run uses: ``precision`` and
    ``channels_last`` as given, or for ``"auto"`` those of :func:`fast_path` (``32-true`` and
    the given layout where float32 is fastest)."""
    if precision != "auto":
        return precision, channels_last
    path = fast_path(device)
    if path is None:
        return "32-true", channels_last
    return path.precision, path.channels_last or channels_last


def measure_speedup(model: nn.Module, images: torch.Tensor, path: FastPath,
                    device: torch.device, steps: int = 3) -> float:
    """How many times faster a training step (forward + backward of the -ELBO, no optimiser
    step) of a copy of ``model`` runs with ``path`` than in float32, on the batch ``images``
    (uint8 ``(B, *data_shape)``): the median of each over ``steps + 1`` timed steps less the
    slowest (the first, warming up). ``model`` itself is not touched, and nothing is
    all-reduced (:func:`~sigmavae.likelihoods.distributed.local_statistics`): one rank of a
    distributed run may call it alone."""
    probe = copy.deepcopy(model).to(device).train()
    batch = images.to(device)
    latent_dim = int(cast(Any, probe).latent_dim)
    noise = torch.randn(batch.shape[0], latent_dim,
                        generator=torch.Generator().manual_seed(0)).to(device)

    def step_seconds(autocast: bool) -> float:
        x = batch.contiguous(memory_format=torch.channels_last) if (
            autocast and path.channels_last and batch.dim() == 4) else batch
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        dtype = torch.bfloat16 if path.precision.startswith("bf16") else torch.float16
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            loss = objective.elbo_terms(probe, x, noise=noise).loss  # type: ignore[arg-type]
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        probe.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def median(autocast: bool) -> float:
        if autocast and path.channels_last:
            probe.to(memory_format=torch.channels_last)
        times = sorted(step_seconds(autocast) for _ in range(steps + 1))[:-1]  # drop the slowest
        return times[len(times) // 2]

    # Under DDP only rank 0 times this, on a plain copy: its batch statistics stay local.
    with local_statistics():
        float32 = median(False)
        return float32 / median(True)
