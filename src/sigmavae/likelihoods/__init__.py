"""Decoder likelihood heads ("calibrated decoders"): raw decoder output -> ``p(x|z)``.

>>> head = create("optimal_sigma")
>>> params = decoder(z)                     # (B, head.param_channels(C), H, W)
>>> dist = head(params, target=x)           # a torch.distributions.Distribution
>>> nll = -dist.log_prob(x)                 # (B,), nats summed over all data dimensions

See :mod:`sigmavae.likelihoods.base` for the conventions every head follows. Every head is
registered by a decorator in its own module (:mod:`.registry`); the 8-bit bins are defined in
:mod:`.bins`, the special functions in :mod:`.special`.
"""

from .base import (
    NUM_LEVELS,
    ImageLikelihood,
    LikelihoodHead,
    LikelihoodInputError,
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
from .gaussian import (
    BinnedNormal,
    FixedSigmaGaussian,
    LearnedSigmaGaussian,
    PerPixelSigmaGaussian,
    UnitGaussian,
    beta_from_sigma,
    sigma_from_beta,
)
from .optimal import PUBLIC_CODE_MIN_LOG_SIGMA, QUANTIZATION_SIGMA, OptimalSigmaGaussian
from .registry import create, names, register, summary
from .softclip import DEFAULT_MIN_LOG_SIGMA, softclip
from .student_t import DEFAULT_MIN_DF, StudentTHead, StudentTWithCdf, student_t_cdf

#: The head a run uses unless told otherwise: the paper's recommendation, the optimal sigma-VAE.
DEFAULT_HEAD = "optimal_sigma"

__all__ = [
    "BIN_WIDTH",
    "DEFAULT_HEAD",
    "DEFAULT_MIN_DF",
    "DEFAULT_MIN_LOG_SIGMA",
    "NUM_LEVELS",
    "PUBLIC_CODE_MIN_LOG_SIGMA",
    "QUANTIZATION_SIGMA",
    "BernoulliHead",
    "BinnedNormal",
    "BitwiseCategoricalHead",
    "BitwiseIntensity",
    "CategoricalHead",
    "DiscretizedGaussianHead",
    "DiscretizedLogisticHead",
    "DiscretizedMixture",
    "FixedSigmaGaussian",
    "ImageLikelihood",
    "IntensityCategorical",
    "LearnedSigmaGaussian",
    "LikelihoodHead",
    "LikelihoodInputError",
    "LogisticMixtureHead",
    "OptimalSigmaGaussian",
    "PerPixelSigmaGaussian",
    "StudentTHead",
    "StudentTWithCdf",
    "UnitBernoulli",
    "UnitGaussian",
    "beta_from_sigma",
    "bounded_categorical_log_prob",
    "categorical_log_prob",
    "check_data",
    "create",
    "discretized_log_prob",
    "effective_beta",
    "names",
    "register",
    "sigma_from_beta",
    "softclip",
    "student_t_cdf",
    "summary",
]
