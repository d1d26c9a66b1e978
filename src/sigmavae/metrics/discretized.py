"""The ELBO on discretised data (paper, Table 4): continuous decoders scored on the 8-bit data.

A continuous head models ``x / 255`` with a density, so its ``-log p`` (nats, can be negative) is
not comparable with a discrete head's ``-log P`` of the intensities. Here ``p(x|z)`` is integrated
over each intensity bin: intensity ``i`` gets the mass of ``[(i - 1/2)/255, (i + 1/2)/255]``, with
the edge bins open (``P(X <= 0.5/255)`` for 0, ``P(X >= 254.5/255)`` for 255), so the 256 masses sum
to one and ``-log P`` is a bound on the negative log-likelihood of the 8-bit data, comparable with
the heads over intensities (for those, the discretised ELBO is their ELBO).

The distribution a head returns gives those masses itself,
:meth:`~sigmavae.likelihoods.ImageLikelihood.bin_log_mass` (the bins are defined once, in
:mod:`sigmavae.likelihoods.bins`): normal densities by a closed form free of cancellation,
Student-t densities by their CDF in float64 in the lower tail, any other density with a ``cdf``
by the plain difference at the bin edges.
"""

from __future__ import annotations

import torch

from ..dataset_elbo import iter_elbo_terms
from ..likelihoods import ImageLikelihood, LikelihoodInputError
from ..objective import scored_frames
from ._common import (
    BPD,
    NATS,
    EvalContext,
    MetricUnavailable,
    bits_per_dim,
    fmt,
    fmt_pm,
    mean_stderr,
)
from .elbo import cached_elbo
from .registry import register_metric

DISCRETIZED_SCALING = ("discrete mass on 8-bit intensities 0..255 (continuous heads: p(x|z) "
                       "integrated over each bin [(i-0.5)/255, (i+0.5)/255], edge bins open)")


def discretized_log_mass(dist: ImageLikelihood, target: torch.Tensor) -> torch.Tensor:
    """``log P(intensity | z)`` per data dimension, float64 nats, shape ``(B, C, ...)``, for a
    continuous ``dist`` (:meth:`~sigmavae.likelihoods.ImageLikelihood.bin_log_mass`).

    ``target`` holds the data as the head sees it (``x / 255`` floats, or integer intensities).

    Raises:
        ValueError: ``dist`` is over intensities already (its ``log_prob`` is the mass).
        MetricUnavailable: the density has no ``cdf`` to integrate over the bins.
    """
    if dist.data_kind != "unit":
        raise ValueError("discretized_log_mass is for continuous heads; discrete heads already "
                         "give the mass of the intensities")
    try:
        return dist.bin_log_mass(dist.intensities(target)).double()
    except NotImplementedError as err:
        raise MetricUnavailable(f"{type(dist.base_dist).__name__} has no cdf to "
                                "discretise") from err


@torch.no_grad()
def discretized_per_image(ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image ``-log P(x_8bit|z)``, ``-log p(x/255|z)`` and KL (float64 nats), one posterior
    sample per image with the same noise as the single-sample ELBO."""
    n = ctx.images.shape[0]
    disc, cont, kl = (torch.zeros(n, dtype=torch.float64) for _ in range(3))
    for idx, terms in iter_elbo_terms(ctx.model, ctx.images, ctx.batch_size, 1, ctx.seed,
                                      ctx.device, torch.arange(n)):
        batch = ctx.images[idx]
        target = (ctx.head.prepare_target(batch) if batch.dtype == torch.uint8
                  else ctx.head.from_unit_interval(batch))
        try:
            log_mass = discretized_log_mass(terms.likelihood,
                                            scored_frames(ctx.model, target).to(ctx.device))
        except LikelihoodInputError as err:  # not 8-bit data: no bins to discretise on
            raise MetricUnavailable(str(err)) from err
        disc[idx] = -log_mass.reshape(idx.numel(), -1).sum(1).cpu()  # a sequence's frames too
        cont[idx] = terms.nll.double().cpu()
        kl[idx] = terms.kl.double().cpu()
    return disc, cont, kl


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    note = (f"{NATS} = {fmt(result['neg_elbo_bits_per_dim'], 4)} {BPD}, on the 8-bit "
            "intensities (comparable across all heads)")
    if "continuous_neg_elbo_nats_per_image" in result:
        note += (f"; same z: -log pdf of x/255 "
                 f"{fmt(result['continuous_neg_elbo_nats_per_image'])} {NATS}")
    return [("-ELBO, discretised (1 sample/image)",
             fmt_pm(result["neg_elbo_nats_per_image"], result["neg_elbo_stderr_nats_per_image"]),
             note)]


@register_metric("discretized", "the single-sample ELBO on the 8-bit data (continuous heads "
                 "integrated over the intensity bins)", title="discretised ELBO (Table 4)",
                 rows=markdown_rows, default=True)
def run(ctx: EvalContext) -> dict:
    """The discretised single-sample ELBO (Table 4), nats/image and bits/dim."""
    valid, reason = ctx.head.bound_validity(ctx.images)
    if not valid:
        raise MetricUnavailable(f"not a valid bound: {reason}")
    result: dict = {"available": True, "data_scaling": DISCRETIZED_SCALING,
                    "samples_per_image": 1}
    if ctx.head.data_kind == "intensity":
        terms = cached_elbo(ctx, 1)
        nll, kl = terms.nll, terms.kl
        result["head_kind"] = "discrete: its ELBO is already a bound on the 8-bit data"
    else:
        nll, cont, kl = discretized_per_image(ctx)
        result["head_kind"] = "continuous, discretised into the 256 intensity bins"
        result["continuous_neg_elbo_nats_per_image"] = mean_stderr(cont + kl)[0]
    neg, se = mean_stderr(nll + kl)
    result.update({
        "neg_elbo_nats_per_image": neg,
        "neg_elbo_stderr_nats_per_image": se,
        "neg_elbo_bits_per_dim": bits_per_dim(neg, ctx.dims),
        "distortion_nll_nats_per_image": mean_stderr(nll)[0],
        "rate_kl_nats_per_image": mean_stderr(kl)[0],
    })
    return result
