"""Helpers shared by the metric modules: units, statistics, bound validity, batching, seeds."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..likelihoods import LikelihoodHead
from ..models.hierarchical import PosteriorUnavailable
from ..models.vae import VAE, prepare_batch

NATS = "nats/image"
BPD = "bits/dim"
LN2 = math.log(2.0)


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed for this model or setup; the message says why (one line)."""


def bits_per_dim(nats_per_image: float, dims: int) -> float:
    """``nats / (D ln 2)``: nats per image to bits per data dimension."""
    return nats_per_image / (dims * LN2)


def mean_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error ``std / sqrt(n)`` (unbiased std; 0 for one value)."""
    v = values.detach().double().flatten().cpu()
    n = v.numel()
    if n == 0:
        raise ValueError("mean_stderr: no values")
    mean = float(v.mean())
    se = float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return mean, se


def model_device(model: VAE) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def eval_mode(model: VAE) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def posterior_params(model: VAE, images: torch.Tensor, batch_size: int = 256,
                     device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and standard deviations of ``q(z|x)`` for every image, ``(N, L)`` float64 on CPU."""
    device = device or model_device(model)
    mus, sigmas = [], []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x, _ = prepare_batch(images[start:start + batch_size].to(device), model.head,
                                 model.compute_dtype)
            try:
                q = model.posterior(x)
            except PosteriorUnavailable as err:
                raise MetricUnavailable(str(err)) from err
            mus.append(q.base_dist.loc.double().cpu())
            sigmas.append(q.base_dist.scale.double().cpu())
    return torch.cat(mus), torch.cat(sigmas)


def stat(values: torch.Tensor) -> dict[str, float]:
    """``{"mean": ..., "stderr": ...}`` of per-image values."""
    mean, se = mean_stderr(values)
    return {"mean": mean, "stderr": se}


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the markdown table (``n/a`` for ``None``)."""
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 10 ** (-digits)):
        return f"{value:.{max(digits, 3)}g}"
    return f"{value:.{digits}f}"


def fmt_pm(mean: float, stderr: float, digits: int = 2) -> str:
    return f"{fmt(mean, digits)} ± {fmt(stderr, digits)}"


@dataclass
class EvalContext:
    """What every metric gets: the model, the (uint8) images and the options.

    ``cache`` lets metrics share work (posterior parameters, per-image ELBO terms).
    """

    model: VAE
    images: torch.Tensor
    batch_size: int = 256
    seed: int = 0
    device: torch.device | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.shape[0] == 0:
            raise ValueError("no images to evaluate")
        if self.device is None:
            self.device = model_device(self.model)

    def option(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value is None else value

    @property
    def head(self) -> LikelihoodHead:
        return self.model.head

    @property
    def dims(self) -> int:
        return self.model.data_dims

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached :func:`posterior_params` of all images."""
        if "posterior" not in self.cache:
            self.cache["posterior"] = posterior_params(self.model, self.images, self.batch_size,
                                                       self.device)
        return self.cache["posterior"]
