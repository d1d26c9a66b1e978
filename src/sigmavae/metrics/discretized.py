"""The ELBO on discretised data (paper, Table 4): continuous decoders scored on the 8-bit data.

A continuous head models ``x / 255`` with a density, so its ``-log p`` (nats, can be negative) is
not comparable with a discrete head's ``-log P`` of the intensities. Here ``p(x|z)`` is integrated
over each intensity bin: intensity ``i`` gets the mass of ``[(i - 1/2)/255, (i + 1/2)/255]``, with
the edge bins open (``P(X <= 0.5/255)`` for 0, ``P(X >= 254.5/255)`` for 255), so the 256 masses sum
to one and ``-log P`` is a bound on the negative log-likelihood of the 8-bit data, comparable with
the categorical / discretised-logistic heads (for those, the discretised ELBO is their ELBO).

Gaussian heads use the closed form of :func:`sigmavae.likelihoods.discretized_log_prob`
(``log_ndtr`` tails, Simpson's rule for narrow bins: no cancellation), Student-t heads their CDF in
float64 evaluated in the lower tail by symmetry, any other head with a ``cdf`` the plain difference.
"""

from __future__ import annotations

import torch
from torch.distributions import Normal

from ..likelihoods import ImageLikelihood, StudentTWithCdf, discretized_log_prob
from ..likelihoods.base import NUM_LEVELS
from ..likelihoods.discretized import BIN_WIDTH, FAMILIES
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
from .elbo import cached_elbo, iter_elbo_terms

_TINY = 1e-300

DISCRETIZED_SCALING = ("discrete mass on 8-bit intensities 0..255 (continuous heads: p(x|z) "
                       "integrated over each bin [(i-0.5)/255, (i+0.5)/255], edge bins open)")


def _to_intensity(target: torch.Tensor) -> torch.Tensor:
    """Integer intensities from a continuous target in [0, 1] (or intensities already)."""
    if target.is_floating_point():
        return torch.round(target.double() * (NUM_LEVELS - 1)).clamp(0, NUM_LEVELS - 1)
    return target.double()


def _student_t_log_mass(base: StudentTWithCdf, x: torch.Tensor) -> torch.Tensor:
    """Bin log-masses of a Student-t in float64, every CDF taken in a lower tail by symmetry."""
    df, loc = base.df.double(), base.loc.double()
    log_scale = base.log_scale.double()
    lo, hi = (x - 0.5) * BIN_WIDTH, (x + 0.5) * BIN_WIDTH
    first, last = x <= 0, x >= NUM_LEVELS - 1

    def lower_tail(t: torch.Tensor) -> torch.Tensor:
        # F(t) if t <= loc else S(t) = F(2 loc - t): always the smaller tail, computed accurately.
        reflected = torch.where(t > loc, 2 * loc - t, t)
        return StudentTWithCdf(df, loc, log_scale.exp(), validate_args=False,
                               log_scale=log_scale).cdf(reflected)

    g_lo = torch.where(first, torch.zeros_like(lo), lower_tail(lo))
    g_hi = torch.where(last, torch.zeros_like(hi), lower_tail(hi))
    below = hi <= loc  # F(hi) - F(lo)
    above = lo >= loc  # S(lo) - S(hi)
    mass = torch.where(below, g_hi - g_lo, torch.where(above, g_lo - g_hi, 1.0 - g_lo - g_hi))
    return mass.clamp_min(_TINY).log()


def _generic_log_mass(base: torch.distributions.Distribution, x: torch.Tensor) -> torch.Tensor:
    lo = ((x - 0.5) * BIN_WIDTH).clamp(0.0, 1.0)
    hi = ((x + 0.5) * BIN_WIDTH).clamp(0.0, 1.0)
    dtype = base.mean.dtype
    f_lo = torch.where(x <= 0, torch.zeros_like(lo), base.cdf(lo.to(dtype)).double())
    f_hi = torch.where(x >= NUM_LEVELS - 1, torch.ones_like(hi), base.cdf(hi.to(dtype)).double())
    return (f_hi - f_lo).clamp_min(_TINY).log()


def discretized_log_mass(dist: ImageLikelihood, target: torch.Tensor) -> torch.Tensor:
    """``log P(intensity | z)`` per data dimension, float64 nats, for a continuous ``dist``.

    ``target`` holds the data as the head sees it (``x / 255`` floats, or integer intensities).
    """
    if dist.data_kind != "unit":
        raise ValueError("discretized_log_mass is for continuous heads; discrete heads already "
                         "give the mass of the intensities")
    x = _to_intensity(target)
    base = dist.base_dist
    if isinstance(base, Normal):
        return discretized_log_prob(FAMILIES["gaussian"], x, base.loc.double(),
                                    base.scale.double().log())
    if isinstance(base, StudentTWithCdf):
        return _student_t_log_mass(base, x)
    try:
        return _generic_log_mass(base, x)
    except NotImplementedError as err:
        raise MetricUnavailable(f"{type(base).__name__} has no cdf to discretise") from err


@torch.no_grad()
def discretized_per_image(ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image ``-log P(x_8bit|z)``, ``-log p(x/255|z)`` and KL (float64 nats), one posterior
    sample per image with the same noise as the single-sample ELBO."""
    n = ctx.images.shape[0]
    disc, cont, kl = (torch.zeros(n, dtype=torch.float64) for _ in range(3))
    for idx, terms in iter_elbo_terms(ctx.model, ctx.images, ctx.batch_size, 1, ctx.seed,
                                      ctx.device, torch.arange(n)):
        batch = ctx.images[idx]
        target = ctx.head.prepare_target(batch) if batch.dtype == torch.uint8 else batch
        log_mass = discretized_log_mass(terms.likelihood, target.to(ctx.device))
        disc[idx] = -log_mass.flatten(1).sum(1).cpu()
        cont[idx] = terms.nll.double().cpu()
        kl[idx] = terms.kl.double().cpu()
    return disc, cont, kl


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


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    note = (f"{NATS} = {fmt(result['neg_elbo_bits_per_dim'], 4)} {BPD}, on the 8-bit "
            "intensities (comparable across all heads)")
    if "continuous_neg_elbo_nats_per_image" in result:
        note += (f"; same z: -log pdf of x/255 "
                 f"{fmt(result['continuous_neg_elbo_nats_per_image'])} {NATS}")
    return [("-ELBO, discretised (1 sample/image)",
             fmt_pm(result["neg_elbo_nats_per_image"], result["neg_elbo_stderr_nats_per_image"]),
             note)]
