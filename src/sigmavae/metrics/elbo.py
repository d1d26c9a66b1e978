"""The ELBO on a data set, in nats per image and bits per dimension.

Scaling (stated with every number): continuous heads are evaluated on 8-bit images divided by
255 (a density on [0, 1]^D, so ``-log p`` can be negative); discrete heads on the integer
intensities 0..255 (a probability mass, always >= 0 nats).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..dataset_elbo import (
    ELBOReport,
    PerImageELBO,
    data_scaling,
    elbo_per_image,
    elbo_sums,
    report_from_sums,
)
from ..objective import Model
from ._common import (
    BPD,
    NATS,
    EvalContext,
    bits_per_dim,
    fmt,
    fmt_pm,
    mean_stderr,
)
from .registry import MetricOption, register_metric


def evaluate_elbo(
    model: Model, images: torch.Tensor, batch_size: int = 256, samples: int = 1, seed: int = 0,
    device: torch.device | str | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ELBOReport:
    """Average ELBO terms over ``images`` (``uint8 (N, C, ...)``) with the head in eval mode.

    ``samples`` posterior samples per image are averaged (1 = the paper's single-sample ELBO).
    ``reduce`` (e.g. an all-reduce sum) combines the sums of several processes.
    """
    if images.shape[0] == 0:
        raise ValueError("evaluate_elbo: no images to evaluate")
    sums = elbo_sums(model, images, batch_size, samples, seed, device)
    if reduce is not None:
        sums = reduce(sums)
    return report_from_sums(model, sums, samples, model.head.bound_validity(images))


# -- the "elbo" metric of the evaluation suite ----------------------------------------------------
def cached_elbo(ctx: EvalContext, samples: int) -> PerImageELBO:
    """:func:`elbo_per_image` of the context's images and seed (computed once per ``samples``)."""
    key = ("elbo", samples, ctx.seed)
    if key not in ctx.cache:
        ctx.cache[key] = elbo_per_image(ctx.model, ctx.images, ctx.batch_size, samples, ctx.seed,
                                        ctx.device)
    return ctx.cache[key]


def _estimate(terms: PerImageELBO, samples: int, dims: int, valid: bool) -> dict:
    rate, rate_se = mean_stderr(terms.kl)
    out: dict = {"samples_per_image": samples, "rate_kl_nats_per_image": rate,
                 "rate_kl_stderr_nats_per_image": rate_se}
    if valid:
        neg, neg_se = mean_stderr(terms.neg_elbo)
        out.update({
            "neg_elbo_nats_per_image": neg,
            "neg_elbo_stderr_nats_per_image": neg_se,
            "neg_elbo_bits_per_dim": bits_per_dim(neg, dims),
            "distortion_nll_nats_per_image": mean_stderr(terms.nll)[0],
        })
    return out


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for key in ("single_sample", "multi_sample"):
        est = result.get(key)
        if est is None:
            continue
        s = est["samples_per_image"]
        label = f"-ELBO ({s} sample{'s' if s > 1 else ''}/image)"
        if result["bound_valid"]:
            rows.append((label, fmt_pm(est["neg_elbo_nats_per_image"],
                                       est["neg_elbo_stderr_nats_per_image"]),
                         f"{NATS} = {fmt(est['neg_elbo_bits_per_dim'], 4)} {BPD}; "
                         f"distortion {fmt(est['distortion_nll_nats_per_image'])} + "
                         f"rate {fmt(est['rate_kl_nats_per_image'])}"))
        else:
            rows.append((label, "n/a", f"not a valid bound: {result['reason']}"))
            rows.append((f"rate KL(q(z|x)‖p(z)) ({s} sample)",
                         fmt_pm(est["rate_kl_nats_per_image"],
                                est["rate_kl_stderr_nats_per_image"]), NATS))
    if result.get("effective_beta") is not None:
        rows.append(("effective beta", fmt(result["effective_beta"], 4),
                     f"2 / mean(sigma^-2) over the test data (sigma {fmt(result['sigma'], 4)} "
                     "on the [0, 1] scale)"))
    return rows


@register_metric("elbo", "single- and multi-sample ELBO: rate, distortion, effective beta",
                 title="ELBO", rows=markdown_rows, default=True, options=[
                     MetricOption("elbo_samples", int, 10, "posterior samples per image for the "
                                  "multi-sample ELBO (the single-sample ELBO is always reported)",
                                  ge=1, aliases=("--samples",))])
def run(ctx: EvalContext) -> dict:
    """Single-sample and ``elbo_samples``-sample ELBO: rate and distortion, effective beta.

    For heads whose bound is not valid only the rate (the KL, a property of the encoder) is
    given; the distortion and the bound are reported as not available, with the reason.
    """
    samples = int(ctx.option("elbo_samples"))
    if samples < 1:
        raise ValueError(f"elbo_samples must be >= 1, got {samples}")
    valid, reason = ctx.head.bound_validity(ctx.images)
    single = cached_elbo(ctx, 1)
    result: dict = {
        "available": True,
        "units": f"{NATS} (sums over the {ctx.dims} data dimensions); {BPD} = nats/(D ln 2)",
        "data_scaling": data_scaling(ctx.head.data_kind, ctx.head.data_range),
        "bound_valid": valid,
        "reason": None if valid else reason,
        "effective_beta": single.effective_beta,
        "sigma": None if single.effective_beta is None else math.sqrt(single.effective_beta / 2),
        "single_sample": _estimate(single, 1, ctx.dims, valid),
    }
    if samples > 1:
        result["multi_sample"] = _estimate(cached_elbo(ctx, samples), samples, ctx.dims, valid)
    return result
