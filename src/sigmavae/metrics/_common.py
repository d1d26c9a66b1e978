"""Helpers shared by the metric modules: units, statistics, bound validity, batching, seeds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..likelihoods import LikelihoodHead
from ..objective import (
    LN2,
    Model,
    PosteriorUnavailable,
    bits_per_dim,
    compute_dtype,
    data_dims,
    eval_mode,
    model_device,
    prepare_batch,
)
from .registry import metric_options

__all__ = ["BPD", "LN2", "NATS", "EvalContext", "MetricUnavailable", "bits_per_dim", "eval_mode",
           "fmt", "fmt_pm", "mean_stderr", "model_device", "posterior_params", "stat"]

NATS = "nats/image"
BPD = "bits/dim"
_DECLARED: Any = object()  # EvalContext.option without a default: the declared one


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed for this model or setup; the message says why (one line)."""


def mean_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error ``std / sqrt(n)`` (unbiased std; 0 for one value)."""
    v = values.detach().double().flatten().cpu()
    n = v.numel()
    if n == 0:
        raise ValueError("mean_stderr: no values")
    mean = float(v.mean())
    se = float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return mean, se


@torch.no_grad()
def posterior_params(model: Model, images: torch.Tensor, batch_size: int = 256,
                     device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and standard deviations of ``q(z|x)`` for every image, ``(N, L)`` float64 on CPU.

    Raises:
        MetricUnavailable: the model has no ``posterior(x)`` (it is optional in the model
            protocol) or it raises :class:`~sigmavae.objective.PosteriorUnavailable`.
    """
    posterior = getattr(model, "posterior", None)
    if posterior is None:
        raise MetricUnavailable(f"{type(model).__name__} has no posterior(x) giving q(z|x) as "
                                "one diagonal Gaussian (optional in the model protocol)")
    device = device or model_device(model)
    mus, sigmas = [], []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x, _ = prepare_batch(images[start:start + batch_size].to(device), model.head,
                                 compute_dtype(model))
            try:
                q = posterior(x)
            except PosteriorUnavailable as err:
                raise MetricUnavailable(str(err)) from err
            base = getattr(q, "base_dist", q)  # Independent(Normal) or a (B, L) Normal
            mus.append(base.mean.double().cpu())
            sigmas.append(base.stddev.double().cpu())
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

    model: Model
    images: torch.Tensor
    batch_size: int = 256
    seed: int = 0
    device: torch.device | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict)
    #: loads held-out examples (the validation split) for metrics that fit something on data
    #: other than what they score; ``None``: there is none
    held_out: Callable[[], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.images.shape[0] == 0:
            raise ValueError("no images to evaluate")
        if self.device is None:
            self.device = model_device(self.model)

    def held_out_images(self) -> torch.Tensor:
        """The held-out examples (``uint8``), loaded once.

        Raises:
            MetricUnavailable: no held-out data was given.
        """
        if self.held_out is None:
            raise MetricUnavailable("needs held-out data (the validation split), none given")
        if "held_out" not in self.cache:
            self.cache["held_out"] = self.held_out()
        return self.cache["held_out"]

    def option(self, name: str, default: Any = _DECLARED) -> Any:
        """The option ``name`` (``None`` counts as not given): else ``default`` if one is
        passed, else the default its metric declared (:func:`.registry.metric_options`;
        ``None`` for a name no metric declares, such as ``plot_path``)."""
        value = self.options.get(name)
        if value is not None:
            return value
        if default is _DECLARED:
            declared = metric_options().get(name)
            return None if declared is None else declared.default
        return default

    @property
    def head(self) -> LikelihoodHead:
        return self.model.head

    @property
    def dims(self) -> int:
        return data_dims(self.model)

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached :func:`posterior_params` of all images."""
        if "posterior" not in self.cache:
            self.cache["posterior"] = posterior_params(self.model, self.images, self.batch_size,
                                                       self.device)
        return self.cache["posterior"]
