"""The bound a trained network would have with the decoder sigma that fits held-out data.

A Gaussian decoder with one shared sigma (``gaussian``, ``fixed_sigma`` = a beta-VAE or SVG's
objective, ``learned_sigma``, ``optimal_sigma``) has, per example,
``-log p(x|z) = SSE / (2 sigma^2) + D (log sigma + log sqrt(2 pi))``, with ``SSE`` the squared
error of the decoder mean over the ``D`` data dimensions (a sequence model: its predicted
frames). Keeping the network and changing only sigma, the sigma that maximises the likelihood of
held-out data is ``sigma* = sqrt(mean SSE / D)`` over that data (paper, eq. 5). This metric fits
``sigma*`` on the validation split and reports the test -ELBO with it: still a valid bound (the
same encoder, decoder mean and posterior draws; only the decoder's constant scale differs), and
beside the trained bound it separates what a fixed, mis-set sigma costs the bound from what the
calibrated objective changes in the network itself.

``SSE`` is recovered exactly from each example's NLL at the trained sigma: on the test data
from the ``elbo`` metric's per-image terms (the same posterior noise, computed once per
evaluation), so only the held-out data needs a pass of its own.
"""

from __future__ import annotations

import math

import torch

from ..dataset_elbo import iter_elbo_terms
from ..objective import HALF_LOG_2PI, Model, data_dims
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


@torch.no_grad()
def squared_errors(model: Model, images: torch.Tensor, batch_size: int, seed: int,
                   device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per example ``(SSE, KL, sigma)``: the squared error of the decoder mean over the data
    dimensions and the rate (``(N,)`` float64 nats), and the head's one shared sigma.

    Raises:
        MetricUnavailable: the head is not a Gaussian on x/255 with one sigma for every
            dimension and example.
    """
    if model.head.data_kind != "unit":
        raise MetricUnavailable(f"{model.head.name}: not a density on x/255")
    n = images.shape[0]
    sse, kl = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    sigmas: set[float] = set()
    dims = data_dims(model)
    everything = torch.arange(n)
    for idx, terms in iter_elbo_terms(model, images, batch_size, 1, seed, device, everything):
        sigma = terms.likelihood.sigma
        if sigma is None or not bool((sigma == sigma.flatten()[0]).all()):
            raise MetricUnavailable(f"{model.head.name}: sigma is not one value shared by "
                                    "every dimension and example")
        s0 = float(sigma.flatten()[0])
        sigmas.add(s0)
        nll = terms.nll.detach().double().cpu()
        sse[idx] = 2 * s0 ** 2 * (nll - dims * (math.log(s0) + HALF_LOG_2PI))
        kl[idx] = terms.kl.detach().double().cpu()
    if len(sigmas) != 1:
        raise MetricUnavailable(f"{model.head.name}: sigma changed between batches")
    return sse, kl, sigmas.pop()


def gaussian_nll(sse: torch.Tensor, sigma: float, dims: int) -> torch.Tensor:
    """``-log N(x; mu, sigma^2 I)`` per example from its squared error (nats)."""
    return sse / (2 * sigma ** 2) + dims * (math.log(sigma) + HALF_LOG_2PI)


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    return [
        ("sigma fitted on held-out data", fmt(result["sigma_refit"], 4),
         f"sqrt(mean SSE / D) over {result['held_out_examples']} validation examples; the "
         f"network was trained with sigma {fmt(result['sigma_trained'], 4)}"),
        ("-ELBO with the fitted sigma",
         fmt_pm(result["neg_elbo_nats_per_image"], result["neg_elbo_stderr_nats_per_image"]),
         f"{NATS} = {fmt(result['neg_elbo_bits_per_dim'], 4)} {BPD} (the same network: a "
         "valid bound)"),
        ("change against the trained sigma",
         fmt_pm(result["change_nats_per_image"], result["change_stderr_nats_per_image"]),
         f"{NATS} (negative: the fitted sigma gives the better bound)"),
    ]


@register_metric("refit_sigma", "the test -ELBO with a shared Gaussian sigma fitted on the "
                 "validation split (same network): what a fixed sigma costs the bound",
                 title="sigma refitted on held-out data", rows=markdown_rows)
def run(ctx: EvalContext) -> dict:
    """Fit ``sigma*`` on ``ctx.held_out_images()``, rescore the test images with it."""
    held_out = ctx.held_out_images()
    val_sse, _, s0 = squared_errors(ctx.model, held_out, ctx.batch_size, ctx.seed, ctx.device)
    dims = ctx.dims
    refit = math.sqrt(float(val_sse.mean()) / dims)
    # the test images' terms as the elbo metric computed them (shared through the context): the
    # held-out pass has checked that the head's one sigma is s0
    terms = cached_elbo(ctx, 1)
    sse = 2 * s0 ** 2 * (terms.nll - dims * (math.log(s0) + HALF_LOG_2PI))
    kl = terms.kl
    trained = gaussian_nll(sse, s0, dims) + kl
    rescored = gaussian_nll(sse, refit, dims) + kl
    neg, neg_se = mean_stderr(rescored)
    change, change_se = mean_stderr(rescored - trained)  # paired: the same examples and draws
    return {
        "available": True,
        "units": "nats per example (image or sequence), x/255 in [0, 1]",
        "sigma_trained": s0, "sigma_refit": refit,
        "held_out_examples": int(held_out.shape[0]),
        "neg_elbo_nats_per_image": neg, "neg_elbo_stderr_nats_per_image": neg_se,
        "neg_elbo_bits_per_dim": bits_per_dim(neg, dims),
        "trained_neg_elbo_nats_per_image": float(trained.mean()),
        "change_nats_per_image": change, "change_stderr_nats_per_image": change_se,
    }
