"""Decoder likelihood heads ("calibrated decoders"): raw decoder output -> ``p(x|z)``.

>>> head = create("optimal_sigma")
>>> params = decoder(z)                     # (B, head.param_channels(C), H, W)
>>> dist = head(params, target=x)           # a torch.distributions.Distribution
>>> nll = -dist.log_prob(x)                 # (B,), nats summed over all data dimensions

See :mod:`sigmavae.likelihoods.base` for the conventions every head follows.
"""

from . import heads as _heads  # noqa: F401  (registers every head)
from .base import (
    NUM_LEVELS,
    ImageLikelihood,
    LikelihoodHead,
    LikelihoodInputError,
    check_data,
)
from .discrete import (
    BernoulliHead,
    BitwiseCategoricalHead,
    BitwiseIntensity,
    CategoricalHead,
    IntensityCategorical,
    categorical_log_prob,
)
from .discretized import (
    DiscretizedGaussianHead,
    DiscretizedLogisticHead,
    DiscretizedMixture,
    LogisticMixtureHead,
    discretized_log_prob,
)
from .gaussian import (
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

__all__ = [
    "DEFAULT_MIN_DF",
    "DEFAULT_MIN_LOG_SIGMA",
    "NUM_LEVELS",
    "PUBLIC_CODE_MIN_LOG_SIGMA",
    "QUANTIZATION_SIGMA",
    "BernoulliHead",
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
    "UnitGaussian",
    "beta_from_sigma",
    "categorical_log_prob",
    "check_data",
    "create",
    "discretized_log_prob",
    "names",
    "register",
    "sigma_from_beta",
    "softclip",
    "student_t_cdf",
    "summary",
]
