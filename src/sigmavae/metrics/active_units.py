"""Active latent units (Burda et al., 2016): ``A_d = Cov_x(E_{q(z|x)}[z_d]) > 0.01``.

A unit whose posterior mean does not vary across the data carries no information about ``x``
(posterior collapse). The variance is the unbiased sample variance over the evaluated images.
"""

from __future__ import annotations

import torch

from ._common import EvalContext, fmt
from .registry import MetricOption, register_metric

#: Burda et al.'s threshold on the variance of the posterior mean.
DEFAULT_THRESHOLD = 0.01


def count_active_units(mu: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Count the latent dimensions whose posterior mean ``mu`` ``(N, L)`` varies over the data."""
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"active units need posterior means of shape (N >= 2, L), got "
                         f"{tuple(mu.shape)}")
    variance = mu.double().var(dim=0, unbiased=True)
    active = variance > threshold
    return {
        "active_units": int(active.sum()),
        "latent_dim": int(mu.shape[1]),
        "threshold": threshold,
        "active_indices": [int(i) for i in torch.nonzero(active).flatten()],
        "variance_of_posterior_mean": [float(v) for v in variance],
    }


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    top = sorted(result["variance_of_posterior_mean"], reverse=True)[:3]
    return [("active units", f"{result['active_units']} / {result['latent_dim']}",
             f"Cov_x(E_q[z_d]) > {result['threshold']:g} over {result['num_data']} images "
             f"(largest variances {', '.join(fmt(v, 3) for v in top)})")]


@register_metric("active_units", "latent units whose posterior mean varies over the data "
                 "(Cov_x(E_q[z_d]) > 0.01)", title="active units", rows=markdown_rows,
                 default=True, options=[
                     MetricOption("active_threshold", float | None, None, "active units: the "
                                  "variance of the posterior mean above which a latent unit is "
                                  f"active (default: {DEFAULT_THRESHOLD}, Burda et al.)", ge=0,
                                  metavar="X"),
                 ])
def run(ctx: EvalContext) -> dict:
    mu, _ = ctx.posterior()
    threshold = float(ctx.option("active_threshold", DEFAULT_THRESHOLD))
    return {"available": True, "units": "count of latent dimensions",
            "num_data": int(mu.shape[0]), **count_active_units(mu, threshold)}
