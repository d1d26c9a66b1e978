"""Mutual information ``I_e(x; z)`` and marginal KL ``D_KL(m(z) || p(z))`` (paper, Sec. 5.2, eq. 6).

With ``m(z) = (1/N) sum_n q(z|x_n)`` the aggregate posterior of ``N`` data points, the average rate
splits as ``E_x KL(q(z|x) || p(z)) = I_e(x; z) + D_KL(m(z) || p(z))`` (Alemi et al., 2017). Both
terms are estimated by Monte Carlo (Rosca et al., 2018): ``M`` draws ``z_j ~ q(z|x_{i_j})``, with
the data points ``i_j`` cycling through all ``N`` (stratified) and ``log m(z_j)`` a ``logsumexp``
over all ``N`` posteriors:

* ``I_e = E[log q(z|x_i) - log m(z)]`` (the mean of ``a_j``), standard error over the draws;
* ``D_KL(m || p) = rate - I_e``, with ``rate`` the analytic average KL over the ``N`` points (so
  the decomposition holds exactly; same standard error), and a direct estimate
  ``E[log m(z) - log p(z)]`` for reference.

``I_e`` is at most ``log N``: with few data points the estimate saturates there. It is the
InfoNCE form, a lower bound on ``I_e`` in expectation (Poole et al., 2019). Leaving the draw's own
posterior out of ``m`` (``log m_{-i}(z) = logsumexp_{n != i} log q(z|x_n) - log(N - 1)``) gives
the leave-one-out estimate, an *upper* bound in expectation with no ``log N`` ceiling. Together
they bracket ``I_e``, and through the exact rate decomposition the marginal KL:
``rate - I_upper <= D_KL(m || p) <= rate - I_lower``. Where the posteriors overlap the two agree;
where every ``z`` identifies its ``x`` (``I_e`` at ``log N``) the bracket shows how much the
finite test set leaves open, instead of a capped number shown as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..objective import HALF_LOG_2PI, standard_normal_log_prob
from ..streams import generator as stream_generator
from ._common import EvalContext, fmt, fmt_pm, mean_stderr
from .registry import MetricOption, register_metric


@dataclass
class MutualInfoEstimate:
    """Estimates in nats (per data point), with standard errors over the Monte Carlo draws."""

    mutual_info: float
    mutual_info_stderr: float
    marginal_kl: float
    marginal_kl_stderr: float
    marginal_kl_direct: float
    marginal_kl_direct_stderr: float
    mutual_info_upper: float  # the leave-one-out estimate: an upper bound in expectation
    mutual_info_upper_stderr: float
    rate: float  # average analytic KL(q(z|x_n) || p(z)) over the N points
    num_data: int
    num_samples: int
    log_num_data: float  # the ceiling of the I_e estimate

    def as_dict(self) -> dict:
        return asdict(self)


def log_posterior_matrix(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``log q(z_j | x_n)`` for every draw ``j`` and data point ``n``: ``(M, N)`` float64."""
    z, mu, sigma = z.double(), mu.double(), sigma.double()
    inv_var = sigma.pow(-2)  # (N, L)
    quad = z.pow(2) @ inv_var.T - 2.0 * z @ (mu * inv_var).T + (mu.pow(2) * inv_var).sum(1)
    norm = sigma.log().sum(1) + mu.shape[1] * HALF_LOG_2PI  # (N,)
    return -0.5 * quad.clamp_min(0.0) - norm


@torch.no_grad()
def mutual_information(
    mu: torch.Tensor, sigma: torch.Tensor, samples: int | None = None,
    generator: torch.Generator | None = None, chunk: int | None = None,
) -> MutualInfoEstimate:
    """Estimate ``I_e(x; z)`` and ``D_KL(m || p)`` from diagonal Gaussian posteriors ``(N, L)``.

    ``samples`` (``M``, default ``max(10 N, 10000)`` capped at ``10^6``): draws ``i_j`` cycle
    through ``0..N-1`` (every point ``floor(M/N)`` times, the remainder at random). ``chunk``
    draws are scored against all ``N`` posteriors at once (default: ``~4M / N``, bounded memory).
    """
    mu, sigma = mu.double().cpu(), sigma.double().cpu()
    n, latent = mu.shape
    if n < 2:
        raise ValueError("mutual information needs at least 2 data points")
    m = samples if samples is not None else min(max(10 * n, 10_000), 1_000_000)
    if m < 1:
        raise ValueError(f"mutual information: samples must be >= 1, got {m}")
    generator = generator or torch.Generator().manual_seed(0)
    index = torch.arange(n).repeat(m // n)
    if m % n:
        index = torch.cat([index, torch.randperm(n, generator=generator)[: m % n]])
    chunk = chunk or max(16, min(4096, (1 << 22) // n))
    log_n = math.log(n)
    a_parts, b_parts, loo_parts = [], [], []
    for start in range(0, m, chunk):
        idx = index[start:start + chunk]
        eps = torch.randn(idx.numel(), latent, generator=generator, dtype=torch.float64)
        z = mu[idx] + sigma[idx] * eps
        log_q_own = (-0.5 * eps.pow(2) - sigma[idx].log() - HALF_LOG_2PI).sum(1)
        log_q = log_posterior_matrix(z, mu, sigma)
        log_m = torch.logsumexp(log_q, dim=1) - log_n
        log_q[torch.arange(idx.numel()), idx] = -math.inf  # leave the draw's own x out
        log_m_others = torch.logsumexp(log_q, dim=1) - math.log(n - 1)
        log_p = standard_normal_log_prob(z).sum(1)
        a_parts.append(log_q_own - log_m)
        b_parts.append(log_m - log_p)
        loo_parts.append(log_q_own - log_m_others)
    a, b, loo = torch.cat(a_parts), torch.cat(b_parts), torch.cat(loo_parts)
    rate = float((0.5 * (mu.pow(2) + sigma.pow(2) - 1.0) - sigma.log()).sum(1).mean())
    mi, mi_se = mean_stderr(a)
    direct, direct_se = mean_stderr(b)
    upper, upper_se = mean_stderr(loo)
    return MutualInfoEstimate(
        mutual_info=mi, mutual_info_stderr=mi_se, marginal_kl=rate - mi,
        marginal_kl_stderr=mi_se, marginal_kl_direct=direct, marginal_kl_direct_stderr=direct_se,
        mutual_info_upper=upper, mutual_info_upper_stderr=upper_se, rate=rate, num_data=n,
        num_samples=m, log_num_data=log_n,
    )


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    ceiling = (f"N={result['num_data']} data points, M={result['num_samples']} draws; "
               f"at most log N = {fmt(result['mutual_info_ceiling_log_n_nats'])}")
    if result["saturated"]:
        ceiling += " (saturated: every z identifies its x; more data raises the ceiling)"
    direct = fmt_pm(result["marginal_kl_direct_nats"], result["marginal_kl_direct_stderr_nats"], 3)
    rows = [
        ("mutual information I_e(x;z)",
         fmt_pm(result["mutual_info_nats"], result["mutual_info_stderr_nats"], 3),
         f"nats; {ceiling}"),
        ("marginal KL D_KL(m(z)‖p(z))",
         fmt_pm(result["marginal_kl_nats"], result["marginal_kl_stderr_nats"], 3),
         f"nats; = rate {fmt(result['rate_kl_nats'])} - I_e (direct MC "
         f"{direct})"),
    ]
    if "mutual_info_upper_nats" in result:
        rows += [
            ("I_e(x;z), leave-one-out (upper bound)",
             fmt_pm(result["mutual_info_upper_nats"], result["mutual_info_upper_stderr_nats"], 3),
             "nats; no log N ceiling; I_e lies between the two in expectation, and below the "
             "rate"),
            ("marginal KL, lower bound (rate - leave-one-out I_e, at least 0)",
             fmt(result["marginal_kl_lower_nats"]),
             "nats; the marginal KL above is its upper bound; where the posteriors do not "
             "overlap the test set cannot narrow the two"),
        ]
    return rows


@register_metric("mi", "mutual information I_e(x;z) and marginal KL D_KL(m(z)||p(z)) (Sec. 5.2)",
                 title="mutual information / marginal KL", rows=markdown_rows, default=True,
                 options=[
                     MetricOption("mi_data", int | None, None, "data points N forming the "
                                  "aggregate posterior m(z) (default: all)", ge=2),
                     MetricOption("mi_samples", int | None, None, "Monte Carlo draws M for "
                                  "I(x;z) (default: max(10 N, 10000))", ge=1, metavar="M"),
                 ])
def run(ctx: EvalContext) -> dict:
    """``I_e`` and ``D_KL(m || p)`` over the first ``mi_data`` images (all by default)."""
    mu, sigma = ctx.posterior()
    n = int(ctx.option("mi_data", mu.shape[0]))
    if n < 2:
        raise ValueError(f"mi_data must be >= 2, got {n}")
    mu, sigma = mu[:n], sigma[:n]
    generator = stream_generator(ctx.seed, "mutual_info")
    est = mutual_information(mu, sigma, ctx.option("mi_samples"), generator)
    return {
        "available": True,
        "units": "nats per data point (latent space; independent of the data scaling)",
        "mutual_info_nats": est.mutual_info,
        "mutual_info_stderr_nats": est.mutual_info_stderr,
        "marginal_kl_nats": est.marginal_kl,
        "marginal_kl_stderr_nats": est.marginal_kl_stderr,
        "marginal_kl_direct_nats": est.marginal_kl_direct,
        "marginal_kl_direct_stderr_nats": est.marginal_kl_direct_stderr,
        "mutual_info_upper_nats": est.mutual_info_upper,
        "mutual_info_upper_stderr_nats": est.mutual_info_upper_stderr,
        # I_e <= rate and a KL >= 0: the bracket, where the leave-one-out estimate says less
        "marginal_kl_lower_nats": max(0.0, est.rate - est.mutual_info_upper),
        "rate_kl_nats": est.rate,
        "num_data": est.num_data,
        "num_samples": est.num_samples,
        "mutual_info_ceiling_log_n_nats": est.log_num_data,
        "saturated": est.mutual_info > est.log_num_data - 0.5,
    }
