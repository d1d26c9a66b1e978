"""Registers every head under its public name (imported by the package ``__init__``)."""

from __future__ import annotations

import functools

from .gaussian import (
    FixedSigmaGaussian,
    LearnedSigmaGaussian,
    PerPixelSigmaGaussian,
    UnitGaussian,
)
from .optimal import OptimalSigmaGaussian
from .registry import register

register("gaussian", "Gaussian, unit variance (the 'Gaussian VAE'; MSE loss)")(UnitGaussian)
register("fixed_sigma", "Gaussian, constant sigma = sqrt(beta/2) (= beta-VAE)")(
    FixedSigmaGaussian
)
register("learned_sigma", "Gaussian, one shared log-sigma learned by gradient descent")(
    LearnedSigmaGaussian
)
register("per_pixel_sigma", "Gaussian, network predicts a soft-clipped sigma per pixel/channel")(
    PerPixelSigmaGaussian
)
register("optimal_sigma", "Gaussian, analytic sigma^2 = batch MSE, shared (optimal sigma-VAE)")(
    functools.partial(OptimalSigmaGaussian, scope="shared")
)
register("optimal_sigma_per_image", "Gaussian, analytic sigma per image (not a valid bound)")(
    functools.partial(OptimalSigmaGaussian, scope="per_image")
)
register("optimal_sigma_per_dim", "Gaussian, analytic sigma per data dimension (batch average)")(
    functools.partial(OptimalSigmaGaussian, scope="per_dim")
)

# -- Student-t, discrete and discretised heads ----------------------------------------------------
from .discrete import BernoulliHead, BitwiseCategoricalHead, CategoricalHead  # noqa: E402
from .discretized import (  # noqa: E402
    DiscretizedGaussianHead,
    DiscretizedLogisticHead,
    LogisticMixtureHead,
)
from .student_t import StudentTHead  # noqa: E402

register("student_t", "Student-t per pixel/channel: predicted location, scale and df")(
    StudentTHead
)
register("bernoulli", "Bernoulli with intensities in [0, 1] as targets (BCE; not a valid bound)")(
    BernoulliHead
)
register("categorical", "256-way softmax per pixel/channel over 8-bit intensities")(
    CategoricalHead
)
register("bitwise_categorical", "8 independent Bernoulli bits per pixel/channel intensity")(
    BitwiseCategoricalHead
)
register("logistic_mixture", "Mixture of K discretised logistics per pixel/channel (no coupling)")(
    LogisticMixtureHead
)
register("discretized_gaussian", "Discretised Gaussian, one shared scale (learned/optimal/fixed)")(
    DiscretizedGaussianHead
)
register("discretized_logistic", "Discretised logistic, one shared scale (learned/optimal/fixed)")(
    DiscretizedLogisticHead
)
