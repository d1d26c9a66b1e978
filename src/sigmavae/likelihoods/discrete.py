"""Discrete decoders: Bernoulli on intensities, 256-way categorical, bitwise categorical.

* ``bernoulli`` (Gregor et al., 2015): intensities ``x`` in ``[0, 1]`` treated as Bernoulli
  probabilities, ``log p(x) = x log p + (1 - x) log(1 - p)``, i.e. minus the binary cross-entropy.
  A real likelihood only for binary data; the paper finds it performs poorly (Table 2).
* ``categorical`` (Sec. 3.2): a softmax over the 256 intensities per pixel and channel;
  ``log_prob`` is memory-bounded by default (chunked, see :class:`CategoricalHead`).
* ``bitwise_categorical`` (App. D): 8 independent Bernoulli bits per pixel and channel.

The two intensity heads model integer intensities ``0..255``; ``log_prob`` is in nats per data
dimension, ``mean`` in intensity units (float), ``sample`` returns ``int64`` intensities.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, constraints

from . import bins
from .base import NUM_LEVELS, ImageLikelihood, LikelihoodHead, ShapeLike, is_binary, upcast
from .bounded_categorical import bounded_categorical_log_prob
from .registry import register

_NO_SHAPE = torch.Size()

#: Number of bits of an 8-bit intensity.
NUM_BITS = 8


# -- Bernoulli ----------------------------------------------------------------------------------
class UnitBernoulli(Bernoulli):
    """``torch.distributions.Bernoulli`` (``logits``) whose ``log_prob`` is also evaluated at
    non-binary ``x`` in ``[0, 1]`` (``-BCE``; hence ``support`` is the unit interval), with a
    ``cdf``. On the 8-bit bins (:meth:`ImageLikelihood.bin_log_mass`) the mass sits on 0 and
    255."""

    support = constraints.unit_interval  # type: ignore[assignment]

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)``: 0 below 0, ``1 - p`` on ``[0, 1)``, 1 from 1 on."""
        value = value.to(self.logits.dtype)
        one_minus_p = torch.sigmoid(-self.logits)
        out = torch.where(value >= 1, torch.ones_like(one_minus_p), one_minus_p)
        return torch.where(value < 0, torch.zeros_like(out), out)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """The quantile of probability ``value`` in ``[0, 1]``: the smallest ``x`` in ``{0, 1}``
        with ``P(X <= x) >= value``, i.e. 0 where ``value <= 1 - p``, else 1 (floats)."""
        one_minus_p = torch.sigmoid(-self.logits)
        return (value.to(self.logits.dtype) > one_minus_p).to(self.logits.dtype)


@register("bernoulli", "Bernoulli with intensities in [0, 1] as targets (BCE; not a valid bound)")
class BernoulliHead(LikelihoodHead):
    """``bernoulli``: ``params`` ``(B, C, *spatial)`` are logits; ``-log_prob`` is the BCE (nats).

    ``mean = sigmoid(logits)``; ``sample`` draws ``{0., 1.}`` floats.
    """

    data_kind = "unit"
    valid_bound = False
    invalid_bound_reason = (
        "the Bernoulli 'likelihood' x log p + (1 - x) log(1 - p) is normalised only over "
        "x in {0, 1}; for non-binary intensities in [0, 1] it is not a density or probability "
        "of x, so -log_prob bounds no negative log-likelihood (it is exact for binary data)"
    )

    def params_per_channel(self) -> int:
        return 1

    def bound_validity(self, data: torch.Tensor | None = None) -> tuple[bool, str | None]:
        """Exact on binary data (every value 0 or full intensity), no bound otherwise."""
        if data is not None and is_binary(data):
            return True, None
        return False, self.invalid_bound_reason

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        base = UnitBernoulli(logits=params, validate_args=False)
        return ImageLikelihood(base, "unit", sigma=None, validate_args=self.validate_args)


# -- 256-way categorical --------------------------------------------------------------------------
def categorical_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[x]``: ``logits (..., 256)``, integer ``x (...)`` -> nats ``(...)``.

    Gather minus ``logsumexp`` in one shot (the ``memory="plain"`` path). No ``(..., 256)``
    log-softmax is kept for the result, but ``logsumexp`` allocates a ``(..., 256)`` temporary
    in the forward pass and its backward (with the gather's) several more: the peak is a few
    times the size of ``logits``. :func:`.bounded_categorical.bounded_categorical_log_prob`
    gives the same values in ``O(chunk * 256)`` extra memory.
    """
    logits = upcast(logits)  # computed in float32, as every likelihood
    picked = logits.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


LogProbFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Memory modes of :class:`CategoricalHead`.
CategoricalMemory = Literal["bounded", "plain"]
CATEGORICAL_MEMORY_MODES: tuple[str, ...] = ("bounded", "plain")
#: Default memory mode of :class:`CategoricalHead` (see ``benchmarks/README.md``).
DEFAULT_CATEGORICAL_MEMORY: CategoricalMemory = "bounded"


def _categorical_log_prob_fn(memory: str, chunk_pixels: int | None) -> LogProbFn:
    if memory not in CATEGORICAL_MEMORY_MODES:
        raise ValueError(
            f"categorical: memory must be one of {CATEGORICAL_MEMORY_MODES}, got {memory!r}"
        )
    if memory == "plain":
        if chunk_pixels is not None:
            raise ValueError("categorical: chunk_pixels applies to memory='bounded' only")
        return categorical_log_prob
    if chunk_pixels is not None and (not isinstance(chunk_pixels, int)
                                     or isinstance(chunk_pixels, bool) or chunk_pixels < 1):
        raise ValueError(f"categorical: chunk_pixels must be a positive int, got "
                         f"{chunk_pixels!r}")
    # None: the size by device and size (auto_chunk_pixels)
    return functools.partial(bounded_categorical_log_prob, chunk_pixels=chunk_pixels)


class IntensityCategorical(Distribution):
    """Element-wise categorical over intensities ``0..255``; ``logits`` ``batch_shape + (256,)``.

    ``log_prob_fn(logits, x)`` computes the log-probabilities (default
    :func:`categorical_log_prob`; :class:`CategoricalHead` passes
    :func:`.bounded_categorical.bounded_categorical_log_prob` unless ``memory="plain"``). Only
    ``log_prob`` goes through it; ``probs``, ``mean``, ``variance``, ``cdf`` and ``sample``
    materialise the ``batch_shape + (256,)`` softmax (and ``cdf`` its cumulative sum) in one
    piece. ``expand`` views the logits (no copy). bf16/fp16 logits are kept as given (the
    bounded ``log_prob`` reads them in place) and every quantity is computed in float32.
    """

    arg_constraints = {"logits": constraints.independent(constraints.real, 1)}  # noqa: RUF012
    support = constraints.integer_interval(0, NUM_LEVELS - 1)

    def __init__(self, logits: torch.Tensor, log_prob_fn: LogProbFn = categorical_log_prob,
                 validate_args: bool | None = None) -> None:
        if logits.shape[-1] != NUM_LEVELS:
            raise ValueError(f"IntensityCategorical: last dim must be {NUM_LEVELS}")
        self.logits = logits
        self.log_prob_fn = log_prob_fn
        super().__init__(batch_shape=logits.shape[:-1], validate_args=validate_args)

    def expand(self, batch_shape: ShapeLike,
               _instance: IntensityCategorical | None = None) -> IntensityCategorical:
        new = self._get_checked_instance(IntensityCategorical, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand((*batch_shape, NUM_LEVELS))
        new.log_prob_fn = self.log_prob_fn
        super(IntensityCategorical, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _wide_logits(self) -> torch.Tensor:
        """The logits in at least float32 (bf16/fp16 ones upcast)."""
        return upcast(self.logits)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self._wide_logits(), -1)

    def _levels(self) -> torch.Tensor:
        logits = self._wide_logits()
        return torch.arange(NUM_LEVELS, dtype=logits.dtype, device=logits.device)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits = self.logits
        if value.shape != self.batch_shape:  # broadcast as torch does (views, no copies)
            shape = torch.broadcast_shapes(value.shape, self.batch_shape)
            logits, value = logits.expand((*shape, NUM_LEVELS)), value.expand(shape)
        return self.log_prob_fn(logits, value)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)`` for integer ``value`` in ``0..255``."""
        if self._validate_args:
            self._validate_sample(value)
        cum = self.probs.cumsum(-1).clamp(max=1.0)
        index = value.long()
        shape = torch.broadcast_shapes(index.shape, self.batch_shape)
        cum = cum.expand((*shape, NUM_LEVELS))
        return cum.gather(-1, index.expand(shape).unsqueeze(-1)).squeeze(-1)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """The quantile of probability ``value`` in ``[0, 1]``: the smallest intensity ``i``
        with ``P(X <= i) >= value`` (``int64``), from the cumulative softmax."""
        cum = self.probs.cumsum(-1)[..., :-1]  # F(0..254); F(255) = 1
        return (cum < value.to(cum.dtype).unsqueeze(-1)).sum(-1)

    def entropy(self) -> torch.Tensor:
        """``-sum_i p_i log p_i`` over the 256 intensities, nats per element (as
        ``torch.distributions.Categorical``; a level with ``p_i = 0`` contributes 0)."""
        logits = self._wide_logits()
        log_p = torch.log_softmax(logits, -1).clamp(min=torch.finfo(logits.dtype).min)
        return -(log_p.exp() * log_p).sum(-1)

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

    def sample(self, sample_shape: ShapeLike = _NO_SHAPE) -> torch.Tensor:
        with torch.no_grad():
            return torch.distributions.Categorical(logits=self._wide_logits()).sample(
                torch.Size(sample_shape)
            )


@register("categorical", "256-way softmax per pixel/channel over 8-bit intensities")
class CategoricalHead(LikelihoodHead):
    """``categorical``: a 256-way softmax per pixel and channel (paper, Sec. 3.2).

    ``params`` ``(B, 256*C, *spatial)``, parameter-major: channel ``i*C + c`` is the logit of
    intensity ``i`` in data channel ``c``. ``-log_prob`` is the cross-entropy (nats).

    Memory (App. D: ``params`` holds 256 values per data dimension, 3 GiB in float32 for one
    1024x1024 colour image) -- options:

    * ``memory="bounded"`` (default): ``log_prob`` / ``elementwise_log_prob`` use
      :func:`bounded_categorical_log_prob`, computing ``logsumexp`` and the picked logit
      ``chunk_pixels`` data elements at a time (default: chosen by device and size,
      :func:`~.bounded_categorical.auto_chunk_pixels`: 4096 on a CPU, 1/16 of the data on a
      GPU, where kernel launches and not the cache decide) with a
      backward that recomputes the softmax per chunk: beyond ``params`` and its gradient, the
      extra memory is ``O(chunk_pixels * 256)``. Same values and gradients as ``"plain"``,
      and not slower on CPU (``benchmarks/memory.py``, ``benchmarks/README.md``). It reads
      contiguous and ``channels_last`` params in place and bf16/fp16 params (bf16-mixed
      training) in float32 chunk by chunk, so neither a layout copy nor a float32 copy of the
      ``256 * C`` channels is made. A backward with ``create_graph=True`` (double backward) is
      exact but not memory-bounded.
    * ``memory="plain"``: :func:`categorical_log_prob`, one-shot gather minus ``logsumexp``,
      whose forward and backward allocate several ``params``-sized temporaries.
    * ``log_prob_fn=f``: any ``f(logits (..., 256), x (...)) -> (...)`` instead (then
      ``memory``/``chunk_pixels`` must not be given).

    ``mean``, ``variance``, ``cdf`` and ``sample`` (and :meth:`predict_mean`) always materialise
    the full ``(B, C, *spatial, 256)`` softmax.

    Args:
        log_prob_fn: a function ``f(logits (..., 256), x (...)) -> (...)`` computing the log
            probabilities instead (library use only; not with ``memory``/``chunk_pixels``).
        memory: ``"bounded"`` (default: chunked, memory ``O(chunk_pixels * 256)``) or
            ``"plain"`` (one shot).
        chunk_pixels: data elements per chunk of ``"bounded"`` (default: by device and size).
    """

    data_kind = "intensity"

    def __init__(
        self,
        log_prob_fn: LogProbFn | None = None,
        validate_args: bool | None = None,
        *,
        memory: CategoricalMemory | None = None,
        chunk_pixels: int | None = None,
    ) -> None:
        super().__init__(validate_args=validate_args)
        if log_prob_fn is not None:
            if memory is not None or chunk_pixels is not None:
                raise ValueError(
                    "categorical: give either log_prob_fn or memory/chunk_pixels, not both"
                )
            self.memory = "custom"
            self.chunk_pixels = None
        else:
            self.memory = DEFAULT_CATEGORICAL_MEMORY if memory is None else memory
            log_prob_fn = _categorical_log_prob_fn(self.memory, chunk_pixels)
            #: ``None``: chosen per call by device and size (``auto_chunk_pixels``)
            self.chunk_pixels = chunk_pixels
        self.log_prob_fn = log_prob_fn
        # bf16/fp16 params (a bf16-mixed decoder's output) stay as they are: our log_prob paths
        # compute in float32 themselves (bounded: chunk by chunk); a user's log_prob_fn gets
        # float32 logits, as every head's distribution does
        self.upcasts_half_params = self.memory == "custom"

    def params_per_channel(self) -> int:
        return NUM_LEVELS

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        # A view (no copy): (B, 256, C, *spatial) -> (B, C, *spatial, 256); the bounded log_prob
        # reads it in place as (B, 256, C*H*W), or as (B*H*W, 256, C) when params are
        # channels_last, in their own dtype.
        logits = self.split_params(params).movedim(1, -1)
        base = IntensityCategorical(logits, self.log_prob_fn, validate_args=False)
        return ImageLikelihood(base, "intensity", sigma=None, validate_args=self.validate_args)

    def extra_repr(self) -> str:
        extra = f", memory={self.memory!r}"
        if self.memory == "bounded":
            extra += f", chunk_pixels={self.chunk_pixels or 'auto'}"
        return super().extra_repr() + extra


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

    arg_constraints = {"logits": constraints.independent(constraints.real, 1)}  # noqa: RUF012
    support = constraints.integer_interval(0, NUM_LEVELS - 1)

    def __init__(self, logits: torch.Tensor, validate_args: bool | None = None) -> None:
        if logits.shape[-1] != NUM_BITS:
            raise ValueError(f"BitwiseIntensity: last dim must be {NUM_BITS}")
        self.logits = logits
        super().__init__(batch_shape=logits.shape[:-1], validate_args=validate_args)

    def expand(self, batch_shape: ShapeLike,
               _instance: BitwiseIntensity | None = None) -> BitwiseIntensity:
        new = self._get_checked_instance(BitwiseIntensity, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand((*batch_shape, NUM_BITS))
        super(BitwiseIntensity, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _weights(self) -> torch.Tensor:
        return 2.0 ** torch.arange(NUM_BITS, dtype=self.logits.dtype, device=self.logits.device)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``sum_j log Bernoulli(bit_j(value); sigmoid(logits_j))`` (nats): minus the BCE."""
        if self._validate_args:
            self._validate_sample(value)
        bits, logits = torch.broadcast_tensors(intensity_bits(value, self.logits.dtype),
                                               self.logits)
        return -F.binary_cross_entropy_with_logits(logits, bits, reduction="none").sum(-1)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X <= value)``, exact in ``O(8)``: ``P(X = x) + sum_j [bit_j(x) = 1]
        P(bits above j equal x's) P(bit_j = 0)`` (no 256-way table)."""
        if self._validate_args:
            self._validate_sample(value)
        bits, logits = torch.broadcast_tensors(intensity_bits(value, self.logits.dtype),
                                               self.logits)
        p1, p0 = torch.sigmoid(logits), torch.sigmoid(-logits)
        p_match = torch.where(bits > 0, p1, p0)  # P(bit_j = bit_j(x))
        # prefix[..., j] = prod_{k > j} p_match[..., k]
        above = torch.flip(torch.cumprod(torch.flip(p_match, [-1]), -1), [-1])
        prefix = torch.cat([above[..., 1:], torch.ones_like(above[..., :1])], -1)
        less = (bits * prefix * p0).sum(-1)
        return (less + above[..., 0]).clamp(max=1.0)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        """The quantile of probability ``value`` in ``[0, 1]``: the smallest intensity ``i`` with
        ``P(X <= i) >= value`` (``int64``), counting the levels whose :meth:`cdf` is below
        ``value`` (exact; a chunk of levels at a time, :func:`~.bins.levels_per_chunk`)."""

        def cdf_at(levels: torch.Tensor) -> torch.Tensor:  # (n,) -> batch_shape + (n,)
            shaped = levels.long().view(-1, *([1] * len(self.batch_shape)))
            return self.cdf(shaped).movedim(0, -1)

        elements = max(self.batch_shape.numel(), value.numel())
        return bins.quantile_by_counting(cdf_at, value, self.logits,
                                         bins.levels_per_chunk(elements, NUM_BITS))

    def entropy(self) -> torch.Tensor:
        """Nats per element: the sum of the 8 bits' Bernoulli entropies (the bits are independent
        and determine the intensity one to one)."""
        p = torch.sigmoid(self.logits)
        return F.binary_cross_entropy_with_logits(self.logits, p, reduction="none").sum(-1)

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

    def sample(self, sample_shape: ShapeLike = _NO_SHAPE) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.logits.shape
        with torch.no_grad():
            bits = torch.bernoulli(torch.sigmoid(self.logits).expand(shape)).long()
            shifts = torch.arange(NUM_BITS, device=self.logits.device)
            return (bits << shifts).sum(-1)


@register("bitwise_categorical", "8 independent Bernoulli bits per pixel/channel intensity")
class BitwiseCategoricalHead(LikelihoodHead):
    """``bitwise_categorical``: 8 Bernoulli logits per pixel and channel, one per bit (App. D).

    ``params`` ``(B, 8*C, *spatial)``, parameter-major: channel ``j*C + c`` is the logit of bit
    ``j`` (``j = 0`` the least significant) of data channel ``c``. ``-log_prob`` is the summed
    binary cross-entropy of the bits (nats).
    """

    data_kind = "intensity"

    def params_per_channel(self) -> int:
        return NUM_BITS

    def distribution(self, params: torch.Tensor, target: torch.Tensor | None) -> ImageLikelihood:
        logits = self.split_params(params).movedim(1, -1)  # (B, C, *spatial, 8)
        return ImageLikelihood(BitwiseIntensity(logits, validate_args=False), "intensity",
                               validate_args=self.validate_args)
