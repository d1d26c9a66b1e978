"""Discrete decoders: Bernoulli on intensities, 256-way categorical, bitwise categorical.

* ``bernoulli`` (Gregor et al., 2015): intensities ``x`` in ``[0, 1]`` treated as Bernoulli
  probabilities, ``log p(x) = x log p + (1 - x) log(1 - p)``, i.e. minus the binary cross-entropy.
  A real likelihood only for binary data; the paper finds it performs poorly (Table 2).
* ``categorical`` (Sec. 3.2): a softmax over the 256 intensities per pixel and channel.
* ``bitwise_categorical`` (App. D): 8 independent Bernoulli bits per pixel and channel.

The two intensity heads model integer intensities ``0..255``; ``log_prob`` is in nats per data
dimension, ``mean`` in intensity units (float), ``sample`` returns ``int64`` intensities.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, constraints

from .base import NUM_LEVELS, ImageLikelihood, LikelihoodHead

_NO_SHAPE = torch.Size()

#: Number of bits of an 8-bit intensity.
NUM_BITS = 8


# -- Bernoulli ----------------------------------------------------------------------------------
class UnitBernoulli(Bernoulli):
    """``torch.distributions.Bernoulli`` (``logits``) whose ``log_prob`` is also evaluated at
    non-binary ``x`` in ``[0, 1]`` (``-BCE``), with a ``cdf`` for binary values."""

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)``: 0 below 0, ``1 - p`` on ``[0, 1)``, 1 from 1 on."""
        value = value.to(self.logits.dtype)
        one_minus_p = torch.sigmoid(-self.logits)
        out = torch.where(value >= 1, torch.ones_like(one_minus_p), one_minus_p)
        return torch.where(value < 0, torch.zeros_like(out), out)


class BernoulliHead(LikelihoodHead):
    """``bernoulli``: ``params`` ``(B, C, *spatial)`` are logits; ``-log_prob`` is the BCE (nats).

    ``mean = sigmoid(logits)``; ``sample`` draws ``{0., 1.}`` floats.
    """

    name = "bernoulli"
    data_kind = "unit"
    valid_bound = False
    invalid_bound_reason = (
        "the Bernoulli 'likelihood' x log p + (1 - x) log(1 - p) is normalised only over "
        "x in {0, 1}; for non-binary intensities in [0, 1] it is not a density or probability "
        "of x, so -log_prob bounds no negative log-likelihood (it is exact for binary data)"
    )

    def params_per_channel(self) -> int:
        return 1

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        base = UnitBernoulli(logits=params, validate_args=False)
        return ImageLikelihood(base, "unit", sigma=None, validate=self.validate)


# -- 256-way categorical --------------------------------------------------------------------------
def categorical_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[x]``: ``logits (..., 256)``, integer ``x (...)`` -> nats ``(...)``.

    Gather minus ``logsumexp`` (no ``(..., 256)`` log-softmax tensor is kept for the result).
    """
    picked = logits.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


LogProbFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class IntensityCategorical(Distribution):
    """Element-wise categorical over intensities ``0..255``; ``logits`` ``batch_shape + (256,)``.

    ``log_prob_fn(logits, x)`` computes the log-probabilities (default
    :func:`categorical_log_prob`); a memory-bounded implementation can be swapped in.
    """

    arg_constraints: dict = {}  # noqa: RUF012
    support = constraints.integer_interval(0, NUM_LEVELS - 1)

    def __init__(self, logits: torch.Tensor, log_prob_fn: LogProbFn = categorical_log_prob):
        if logits.shape[-1] != NUM_LEVELS:
            raise ValueError(f"IntensityCategorical: last dim must be {NUM_LEVELS}")
        self.logits = logits
        self.log_prob_fn = log_prob_fn
        super().__init__(batch_shape=logits.shape[:-1], validate_args=False)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, -1)

    def _levels(self) -> torch.Tensor:
        return torch.arange(NUM_LEVELS, dtype=self.logits.dtype, device=self.logits.device)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.log_prob_fn(self.logits, value)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)`` for integer ``value`` in ``0..255``."""
        cum = self.probs.cumsum(-1).clamp(max=1.0)
        return cum.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)

    @property
    def mean(self) -> torch.Tensor:
        return (self.probs * self._levels()).sum(-1)

    @property
    def variance(self) -> torch.Tensor:
        p, levels = self.probs, self._levels()
        mean = (p * levels).sum(-1, keepdim=True)
        return (p * (levels - mean) ** 2).sum(-1)

    @property
    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def sample(self, sample_shape: torch.Size | tuple = _NO_SHAPE) -> torch.Tensor:
        with torch.no_grad():
            return torch.distributions.Categorical(logits=self.logits).sample(
                torch.Size(sample_shape)
            )


class CategoricalHead(LikelihoodHead):
    """``categorical``: a 256-way softmax per pixel and channel (paper, Sec. 3.2).

    ``params`` ``(B, 256*C, *spatial)``, parameter-major: channel ``i*C + c`` is the logit of
    intensity ``i`` in data channel ``c``. ``-log_prob`` is the cross-entropy (nats). Memory:
    256 values per data dimension (App. D).
    """

    name = "categorical"
    data_kind = "intensity"

    def __init__(self, log_prob_fn: LogProbFn = categorical_log_prob, validate: bool = True):
        super().__init__(validate=validate)
        self.log_prob_fn = log_prob_fn

    def params_per_channel(self) -> int:
        return NUM_LEVELS

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        logits = self.split_params(params).movedim(1, -1)  # (B, C, *spatial, 256)
        base = IntensityCategorical(logits, self.log_prob_fn)
        return ImageLikelihood(base, "intensity", sigma=None, validate=self.validate)


# -- bitwise categorical --------------------------------------------------------------------------
def intensity_bits(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bits of integer intensities ``x`` ``(...)`` as ``(..., 8)`` of ``dtype``, LSB first."""
    shifts = torch.arange(NUM_BITS, device=x.device)
    return ((x.long().unsqueeze(-1) >> shifts) & 1).to(dtype)


class BitwiseIntensity(Distribution):
    """Element-wise distribution over ``0..255`` with 8 independent bits.

    ``logits`` ``batch_shape + (8,)``: ``logits[..., j]`` is the logit of bit ``j`` being 1,
    ``j = 0`` the least significant bit, so ``x = sum_j 2^j bit_j``.
    """

    arg_constraints: dict = {}  # noqa: RUF012
    support = constraints.integer_interval(0, NUM_LEVELS - 1)

    def __init__(self, logits: torch.Tensor):
        if logits.shape[-1] != NUM_BITS:
            raise ValueError(f"BitwiseIntensity: last dim must be {NUM_BITS}")
        self.logits = logits
        super().__init__(batch_shape=logits.shape[:-1], validate_args=False)

    def _weights(self) -> torch.Tensor:
        return 2.0 ** torch.arange(NUM_BITS, dtype=self.logits.dtype, device=self.logits.device)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``sum_j log Bernoulli(bit_j(value); sigmoid(logits_j))`` (nats): minus the BCE."""
        bits = intensity_bits(value, self.logits.dtype)
        logits = self.logits.expand(bits.shape)
        return -F.binary_cross_entropy_with_logits(logits, bits, reduction="none").sum(-1)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)``, exact in ``O(8)``: ``P(X = x) + sum_j [bit_j(x) = 1]
        P(bits above j equal x's) P(bit_j = 0)`` (no 256-way table)."""
        bits = intensity_bits(value, self.logits.dtype)
        logits = self.logits.expand(bits.shape)
        p1, p0 = torch.sigmoid(logits), torch.sigmoid(-logits)
        p_match = torch.where(bits > 0, p1, p0)  # P(bit_j = bit_j(x))
        # prefix[..., j] = prod_{k > j} p_match[..., k]
        above = torch.flip(torch.cumprod(torch.flip(p_match, [-1]), -1), [-1])
        prefix = torch.cat([above[..., 1:], torch.ones_like(above[..., :1])], -1)
        less = (bits * prefix * p0).sum(-1)
        return (less + above[..., 0]).clamp(max=1.0)

    @property
    def mean(self) -> torch.Tensor:
        """``sum_j 2^j sigmoid(logits_j)`` (bits are independent), intensity units."""
        return (torch.sigmoid(self.logits) * self._weights()).sum(-1)

    @property
    def variance(self) -> torch.Tensor:
        p = torch.sigmoid(self.logits)
        return (p * (1 - p) * self._weights() ** 2).sum(-1)

    @property
    def mode(self) -> torch.Tensor:
        return ((self.logits > 0).long() << torch.arange(NUM_BITS, device=self.logits.device)).sum(
            -1
        )

    def sample(self, sample_shape: torch.Size | tuple = _NO_SHAPE) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.logits.shape
        with torch.no_grad():
            bits = torch.bernoulli(torch.sigmoid(self.logits).expand(shape)).long()
            shifts = torch.arange(NUM_BITS, device=self.logits.device)
            return (bits << shifts).sum(-1)


class BitwiseCategoricalHead(LikelihoodHead):
    """``bitwise_categorical``: 8 Bernoulli logits per pixel and channel, one per bit (App. D).

    ``params`` ``(B, 8*C, *spatial)``, parameter-major: channel ``j*C + c`` is the logit of bit
    ``j`` (``j = 0`` the least significant) of data channel ``c``. ``-log_prob`` is the summed
    binary cross-entropy of the bits (nats).
    """

    name = "bitwise_categorical"
    data_kind = "intensity"

    def params_per_channel(self) -> int:
        return NUM_BITS

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        logits = self.split_params(params).movedim(1, -1)  # (B, C, *spatial, 8)
        return ImageLikelihood(BitwiseIntensity(logits), "intensity", validate=self.validate)
