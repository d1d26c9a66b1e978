"""Special functions the likelihood heads need, accurate in the tails and with stable gradients.

Every function here is element-wise on tensors (broadcasting where it takes several) and is
tested against ``scipy.special`` (``tests/likelihoods/test_special.py``):

* :func:`log1mexp`: ``log(1 - exp(-u))`` (bin masses from a difference of log-CDFs);
* :func:`log_ndtr`: ``log Phi(z)`` of the standard normal, with a float32-stable gradient;
* :func:`softplus`: ``log(1 + exp(x))`` without a linear cut-off;
* :func:`log_gamma_half_ratio`: ``lgamma(a + 1/2) - lgamma(a)`` without cancellation;
* :func:`betainc`: the regularised incomplete beta function ``I_x(a, b)`` by its continued
  fraction (``torch.special`` has none), which gives the Student-t CDF.
"""

from __future__ import annotations

import math

import torch

_LN2 = math.log(2.0)
#: Iterations of the incomplete-beta continued fraction (it stops early once every element has
#: converged; with ``x`` below the switch point ``(a + 1) / (a + b + 2)`` and ``a`` up to ``5e3``
#: fewer than 300 are needed).
BETACF_MAX_ITER = 400
#: ``log sqrt(2 pi)``, the standard normal's log normaliser (nats).
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log1mexp(u: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-u))`` for ``u > 0``, accurate everywhere (Maechler, 2012: switch at ln 2).

    Both branches get safe inputs, so the gradient is finite wherever the value is.
    """
    small = u < _LN2
    u_small = torch.where(small, u, torch.full_like(u, _LN2))
    u_large = torch.where(small, torch.full_like(u, _LN2), u)
    return torch.where(small, torch.log(-torch.expm1(-u_small)), torch.log1p(-torch.exp(-u_large)))


class _LogNdtr(torch.autograd.Function):
    """``log_ndtr`` with a stable gradient: torch's float32 backward of ``log_ndtr`` is off by
    ~1e-3 at ``z = -300`` and NaN beyond ``~-1e4``; here ``d/dz = phi(z) / Phi(z)`` is computed
    as ``sqrt(2/pi) / erfcx(-z/sqrt(2))`` for ``z < 0`` (the inverse Mills ratio, no
    cancellation). The backward is itself differentiable (double backward works)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return torch.special.log_ndtr(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        return grad * ndtr_hazard(z)


def ndtr_hazard(z: torch.Tensor) -> torch.Tensor:
    """``phi(z) / Phi(z)`` (the derivative of ``log Phi``), accurate for all ``z``."""
    neg = z < 0
    z_neg = torch.where(neg, z, torch.zeros_like(z))
    z_pos = torch.where(neg, torch.zeros_like(z), z)
    left = math.sqrt(2 / math.pi) / torch.special.erfcx(-z_neg * math.sqrt(0.5))
    right = torch.exp(-0.5 * z_pos * z_pos) / (math.sqrt(2 * math.pi) * torch.special.ndtr(z_pos))
    return torch.where(neg, left, right)


def log_ndtr(z: torch.Tensor) -> torch.Tensor:
    """``log Phi(z)`` (``torch.special.log_ndtr``, same values) with a gradient stable in
    float32 (see :func:`ndtr_hazard`)."""
    return _LogNdtr.apply(z)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))`` without ``F.softplus``'s linear cut-off (exact for large ``x``)."""
    return x.clamp_min(0.0) + torch.log1p(torch.exp(-x.abs()))


def log_gamma_half_ratio(a: torch.Tensor) -> torch.Tensor:
    """``lgamma(a + 1/2) - lgamma(a)`` for ``a > 0``, accurate for large ``a`` (in float64).

    For ``a >= 100`` the asymptotic series ``log(a)/2 - 1/(8a) + 1/(192a^3) + 1/(640a^5)
    - 17/(14336a^7)`` (error < 1e-12) replaces the difference of two huge ``lgamma`` values.
    The result has the dtype of ``a``.
    """
    a64 = a.to(torch.float64)
    big = a64 >= 100.0
    a_s = torch.where(big, a64, torch.full_like(a64, 100.0))  # safe inputs: no inf * 0 in backward
    a_d = torch.where(big, torch.ones_like(a64), a64)
    inv = a_s.reciprocal()
    inv2 = inv * inv
    series = 0.5 * a_s.log() + inv * (
        -1.0 / 8 + inv2 * (1.0 / 192 + inv2 * (1.0 / 640 - inv2 * 17.0 / 14336))
    )
    direct = torch.lgamma(a_d + 0.5) - torch.lgamma(a_d)
    return torch.where(big, series, direct).to(a.dtype)


def betacf(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4).

    ``I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) * betacf(a, b, x)``. Converges quickly for
    ``x < (a + 1) / (a + b + 2)``; all inputs float64 of one shape.
    """
    tiny = 1e-300
    eps = 4 * torch.finfo(torch.float64).eps

    def guard(v: torch.Tensor) -> torch.Tensor:
        return torch.where(v.abs() < tiny, torch.full_like(v, tiny), v)

    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = torch.ones_like(x)
    d = 1.0 / guard(1.0 - qab * x / qap)
    h = d
    for m in range(1, BETACF_MAX_ITER + 1):
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 / guard(1.0 + aa * d)
        c = guard(1.0 + aa / c)
        h = h * d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 / guard(1.0 + aa * d)
        c = guard(1.0 + aa / c)
        delta = d * c
        h = h * delta
        if m % 8 == 0 and bool(((delta - 1.0).abs() <= eps).all()):
            break
    return h


def betainc(
    a: torch.Tensor, b: torch.Tensor, log_x: torch.Tensor, log_y: torch.Tensor
) -> torch.Tensor:
    """The regularised incomplete beta function ``I_x(a, b)`` (``scipy.special.betainc``).

    ``x`` is given as ``log_x = log(x)`` and ``log_y = log(1 - x)``, both, so that neither ``x``
    nor ``1 - x`` loses digits by rounding (the Student-t CDF has them from ``log(t^2 / nu)``).
    Evaluated in float64 by the continued fraction on whichever side converges
    (``I_x(a, b) = 1 - I_{1-x}(b, a)``); inputs broadcast together, ``a, b > 0``; the result
    is float64 and differentiable through autograd.
    """
    a, b, log_x, log_y = (t.to(torch.float64) for t in torch.broadcast_tensors(a, b, log_x, log_y))
    swap = log_x.exp() > (a + 1.0) / (a + b + 2.0)
    a_, b_ = torch.where(swap, b, a), torch.where(swap, a, b)
    log_x_, log_y_ = torch.where(swap, log_y, log_x), torch.where(swap, log_x, log_y)
    log_beta = torch.lgamma(a_) + torch.lgamma(b_) - torch.lgamma(a_ + b_)
    front = torch.exp(a_ * log_x_ + b_ * log_y_ - log_beta) / a_
    ibeta = front * betacf(a_, b_, log_x_.exp())
    return torch.where(swap, 1.0 - ibeta, ibeta)
