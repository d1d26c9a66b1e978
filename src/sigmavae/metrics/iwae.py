"""The importance-weighted bound (IWAE; Burda et al., 2016).

``L_K(x) = log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)`` with ``z_k ~ q(z|x)``: a lower bound on
``log p(x)`` that is the ELBO for ``K = 1``, is non-decreasing in ``K`` in expectation and tends to
``log p(x)`` as ``K -> inf``. The weights come from
:func:`sigmavae.objective.log_importance_weights` (one code path for every model); the ``K``
samples of an image are run through the model in chunks of ``batch_size`` (image, sample) rows,
so memory stays bounded for any ``K``, and combined with ``logsumexp`` in float64. The estimates
for ``k < K`` use the first ``k`` of the ``K`` samples. Image ``i``'s noise comes from its own
stream (:func:`sigmavae.streams.iwae_image_seed`), so the bounds do not depend on the batching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.distributions import Distribution, Independent, Normal

from .. import objective
from ..dataset_elbo import data_scaling
from ..objective import LogRatioUnavailable, Model, PosteriorUnavailable, posterior_decoder
from ..streams import iwae_image_seed
from ._common import (
    BPD,
    NATS,
    EvalContext,
    MetricUnavailable,
    bits_per_dim,
    eval_mode,
    fmt,
    fmt_pm,
    mean_stderr,
    model_device,
)
from .registry import MetricOption, register_metric


def importance_noise(seed: int, index: int, samples: int, latent_dim: int,
                 generator: torch.Generator) -> torch.Tensor:
    """The standard-normal draws behind the importance samples of image ``index`` (its place in
    the evaluated split), ``(samples, latent_dim)`` float64: a function of ``seed`` and
    ``index`` only, so the bound of an image is the same whatever the batching (tests rebuild a
    model's importance weights from it)."""
    generator.manual_seed(iwae_image_seed(seed, index))
    return torch.randn(samples, latent_dim, generator=generator, dtype=torch.float64)


@torch.no_grad()
def log_importance_weights(
    model: Model, images: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 256,
    device: torch.device | str | None = None, first_index: int = 0,
) -> torch.Tensor:
    """``log p(x|z_k) + log p(z_k) - log q(z_k|x)``, ``(B, samples)`` float64 nats on the CPU.

    ``images`` (``uint8`` or floats in [0, 1]) are one batch; image ``i`` uses the noise of index
    ``first_index + i``. The model sees at most ``batch_size`` (image, sample) rows at a time, each
    through :func:`sigmavae.objective.log_importance_weights` (every latent layer's prior and
    posterior, from the model), in eval mode; the model runs in its precision
    (:func:`~sigmavae.objective.compute_dtype`: float64 for a model converted with ``.double()``)
    and gets the float64 noise; the weights are combined in float64.

    Raises:
        MetricUnavailable: the model gives no ``log p(z) - log q(z|x)``.
    """
    device = device or model_device(model)
    n = images.shape[0]
    generator = torch.Generator()
    noise = torch.cat([importance_noise(seed, first_index + i, samples, model.latent_dim, generator)
                       for i in range(n)])  # (B * K, L), image-major
    log_w = torch.empty(n * samples, dtype=torch.float64)
    images = images.to(device)
    with eval_mode(model):
        # A model that decodes a computed posterior (the VAE) encodes each image once for its
        # K rows.
        q = _posterior_once(model, images)
        for start in range(0, n * samples, batch_size):
            stop = min(start + batch_size, n * samples)
            rows = torch.arange(start, stop, device=images.device) // samples
            try:
                weights = objective.log_importance_weights(
                    model, images[rows], noise[start:stop].to(device),
                    posterior=None if q is None else _rows_of(q, rows))
            except LogRatioUnavailable as err:
                raise MetricUnavailable(str(err)) from err
            log_w[start:stop] = weights.double().cpu()
    return log_w.view(n, samples)


def _posterior_once(model: Model, images: torch.Tensor) -> Distribution | None:
    """``q(z|x)`` of ``images`` for a model with ``decode_posterior`` (the model protocol's
    :class:`~sigmavae.objective.PosteriorDecoder`: one encoding per image), ``None`` for other
    models, e.g. the hierarchical VAE, whose posterior is computed within its own ``forward``."""
    decoder = posterior_decoder(model)
    if decoder is None:
        return None
    x, _ = objective.prepare_batch(images, model.head, objective.compute_dtype(model))
    try:
        return decoder.posterior(x)
    except PosteriorUnavailable:  # not one diagonal Gaussian: every row through forward
        return None


def _rows_of(q: Distribution, rows: torch.Tensor) -> Distribution:
    """The diagonal Gaussian ``q`` (``Independent(Normal)`` over ``(B, L)``, or a ``(B, L)``
    ``Normal``, as the protocol's ``posterior(x)`` gives it) at batch indices ``rows``."""
    base = getattr(q, "base_dist", None)
    if base is None:
        return Normal(q.mean[rows], q.stddev[rows], validate_args=False)
    return Independent(Normal(base.loc[rows], base.scale[rows], validate_args=False), 1)


def iwae_from_weights(log_w: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """``logsumexp(log_w[:, :k]) - log k`` per row: the ``k``-sample bound (nats)."""
    k = log_w.shape[1] if k is None else k
    return torch.logsumexp(log_w[:, :k], dim=1) - math.log(k)


def default_ks(samples: int) -> list[int]:
    """``1, 10, 100, ... < samples`` and ``samples`` itself."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 10
    return [*ks, samples]


@torch.no_grad()
def iwae_per_image(
    model: Model, images: torch.Tensor, samples: int, ks: Sequence[int] | None = None,
    seed: int = 0, batch_size: int = 256, device: torch.device | str | None = None,
) -> dict[int, torch.Tensor]:
    """``{k: L_k(x)}`` for every image (``(N,)`` float64 nats, log-likelihood lower bounds).

    ``ks`` (default :func:`default_ks`) must not exceed ``samples``; ``L_k`` uses the first ``k``
    samples of each image, so the estimates for different ``k`` are paired.
    """
    if samples < 1:
        raise ValueError(f"iwae: samples must be >= 1, got {samples}")
    ks = sorted(set(default_ks(samples) if ks is None else ks))
    if ks[0] < 1 or ks[-1] > samples:
        raise ValueError(f"iwae: every k must be in 1..{samples}, got {ks}")
    per_batch = max(1, batch_size // samples)
    out: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, images.shape[0], per_batch):
        log_w = log_importance_weights(model, images[start:start + per_batch], samples, seed,
                                       batch_size, device, first_index=start)
        for k in ks:
            out[k].append(iwae_from_weights(log_w, k))
    return {k: torch.cat(v) for k, v in out.items()}


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    k = result["samples_per_image"]
    by_k = ", ".join(f"K={key}: {fmt(v['neg_bound_nats_per_image'])}"
                     for key, v in result["by_k"].items())
    gain = fmt_pm(result["gain_over_1_sample_nats_per_image"],
                  result["gain_over_1_sample_stderr_nats_per_image"])
    return [(f"-IWAE bound (K={k})",
             fmt_pm(result["neg_iwae_nats_per_image"], result["neg_iwae_stderr_nats_per_image"]),
             f"{NATS} = {fmt(result['neg_iwae_bits_per_dim'], 4)} {BPD}; tighter than K=1 by "
             f"{gain}; {by_k}")]


@register_metric("iwae", "the importance-weighted bound on log p(x) (Burda et al.), K samples",
                 title="IWAE bound", rows=markdown_rows, options=[
                     MetricOption("iwae_samples", int, 1000, "K importance samples per image "
                                  "(decoded in chunks of --batch-size)", ge=1, metavar="K")])
def run(ctx: EvalContext) -> dict:
    """``-L_K`` (nats/image, bits/dim) for ``K = iwae_samples`` and nested ``k = 1, 10, ...``."""
    valid, reason = ctx.head.bound_validity(ctx.images)
    if not valid:
        raise MetricUnavailable(f"not a valid bound: {reason}")
    samples = int(ctx.option("iwae_samples"))
    bounds = iwae_per_image(ctx.model, ctx.images, samples, seed=ctx.seed,
                            batch_size=ctx.batch_size, device=ctx.device)
    by_k = {}
    for k, values in bounds.items():
        neg, se = mean_stderr(-values)
        by_k[str(k)] = {"neg_bound_nats_per_image": neg, "neg_bound_stderr_nats_per_image": se,
                        "neg_bound_bits_per_dim": bits_per_dim(neg, ctx.dims)}
    top = by_k[str(samples)]
    gain, gain_se = mean_stderr(bounds[samples] - bounds[1])
    return {
        "available": True,
        "data_scaling": data_scaling(ctx.head.data_kind, ctx.head.data_range),
        "samples_per_image": samples,
        "neg_iwae_nats_per_image": top["neg_bound_nats_per_image"],
        "neg_iwae_stderr_nats_per_image": top["neg_bound_stderr_nats_per_image"],
        "neg_iwae_bits_per_dim": top["neg_bound_bits_per_dim"],
        "gain_over_1_sample_nats_per_image": gain,
        "gain_over_1_sample_stderr_nats_per_image": gain_se,
        "by_k": by_k,
    }
