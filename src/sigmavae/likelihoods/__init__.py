"""Decoder likelihood heads ("calibrated decoders"): raw decoder output -> ``p(x|z)``.

>>> head = create("optimal_sigma")
>>> params = decoder(z)                     # (B, head.param_channels(C), H, W)
>>> dist = head(params, target=x)           # a torch.distributions.Distribution
>>> nll = -dist.log_prob(x)                 # (B,), nats summed over all data dimensions

Data of any range and shape: declare it, ``create("optimal_sigma", data_range="real")`` (or
``"signed"`` for [-1, 1]; the default ``"unit"`` is [0, 1] images); mask padding with
``head(params, target=x, mask=m)``. Without a distribution object,
``nll, sigma = gaussian_nll(pred, target, mask=m)`` replaces ``F.mse_loss`` (:mod:`.functional`).
A head with parameters of its own (``learned_sigma``) must be in the optimiser; it warns
(:class:`SigmaNotOptimisedWarning`) when training leaves it out.

See :mod:`sigmavae.likelihoods.base` for the conventions every head follows. Every head is
registered by a decorator in its own module (:mod:`.registry`); the 8-bit bins are defined in
:mod:`.bins`, the special functions in :mod:`.special`.
"""

from ._location import DATA_RANGES, DataRange, DoubleSquashWarning
from ._optimiser_check import SigmaNotOptimisedWarning
from .base import (
    NUM_LEVELS,
    ImageLikelihood,
    LikelihoodHead,
    LikelihoodInputError,
    align_mask,
    check_data,
    effective_beta,
)
from .bins import BIN_WIDTH, discretized_log_prob
from .bounded_categorical import bounded_categorical_log_prob
from .discrete import (
    BernoulliHead,
    BitwiseCategoricalHead,
    BitwiseIntensity,
    CategoricalHead,
    IntensityCategorical,
    UnitBernoulli,
    categorical_log_prob,
)
from .discretized import (
    DiscretizedGaussianHead,
    DiscretizedLogisticHead,
    DiscretizedMixture,
    LogisticMixtureHead,
)
from .functional import GaussianNLL, gaussian_nll
from .gaussian import (
    BinnedNormal,
    FixedSigmaGaussian,
    LearnedSigmaGaussian,
    PerPixelSigmaGaussian,
    UnitGaussian,
    beta_from_sigma,
    sigma_from_beta,
)
from .optimal import (
    DEFAULT_MIN_SIGMA,
    PUBLIC_CODE_MIN_LOG_SIGMA,
    QUANTIZATION_SIGMA,
    REAL_MIN_SIGMA,
    OptimalSigmaGaussian,
    masked_variance,
)
from .registry import create, describe, names, register, summary
from .softclip import DEFAULT_MIN_LOG_SIGMA, softclip
from .student_t import DEFAULT_MIN_DF, StudentTHead, StudentTWithCdf, student_t_cdf

#: The head a run uses unless told otherwise: the paper's recommendation, the optimal sigma-VAE.
DEFAULT_HEAD = "optimal_sigma"

__all__ = [
    "BIN_WIDTH",
    "DATA_RANGES",
    "DEFAULT_HEAD",
    "DEFAULT_MIN_DF",
    "DEFAULT_MIN_LOG_SIGMA",
    "DEFAULT_MIN_SIGMA",
    "NUM_LEVELS",
    "PUBLIC_CODE_MIN_LOG_SIGMA",
    "QUANTIZATION_SIGMA",
    "REAL_MIN_SIGMA",
    "BernoulliHead",
    "BinnedNormal",
    "BitwiseCategoricalHead",
    "BitwiseIntensity",
    "CategoricalHead",
    "DataRange",
    "DiscretizedGaussianHead",
    "DiscretizedLogisticHead",
    "DiscretizedMixture",
    "DoubleSquashWarning",
    "FixedSigmaGaussian",
    "GaussianNLL",
    "ImageLikelihood",
    "IntensityCategorical",
    "LearnedSigmaGaussian",
    "LikelihoodHead",
    "LikelihoodInputError",
    "LogisticMixtureHead",
    "OptimalSigmaGaussian",
    "PerPixelSigmaGaussian",
    "SigmaNotOptimisedWarning",
    "StudentTHead",
    "StudentTWithCdf",
    "UnitBernoulli",
    "UnitGaussian",
    "align_mask",
    "beta_from_sigma",
    "bounded_categorical_log_prob",
    "categorical_log_prob",
    "check_data",
    "create",
    "describe",
    "discretized_log_prob",
    "effective_beta",
    "gaussian_nll",
    "masked_variance",
    "names",
    "register",
    "sigma_from_beta",
    "softclip",
    "student_t_cdf",
    "summary",
]
