"""Models: the VAE container and the paper's networks, registered by name.

Every model follows the protocol of :mod:`sigmavae.objective` (``forward(x, noise)`` returns a
:class:`~sigmavae.objective.ModelOutput`); the objective, not the model, computes the ELBO.
"""

from ..objective import ELBOTerms, ModelOutput, PosteriorUnavailable, prepare_batch
from .conv import ConvDecoder, ConvEncoder, build_conv_vae
from .hierarchical import HierarchicalVAE, build_hierarchical_vae
from .registry import (
    MODELS,
    build_model,
    check_model_options,
    describe_model,
    model_names,
    register_model,
)
from .svg import SVGLP, build_svg
from .vae import VAE, kl_to_standard_normal

__all__ = [
    "MODELS",
    "SVGLP",
    "VAE",
    "ConvDecoder",
    "ConvEncoder",
    "ELBOTerms",
    "HierarchicalVAE",
    "ModelOutput",
    "PosteriorUnavailable",
    "build_conv_vae",
    "build_hierarchical_vae",
    "build_model",
    "build_svg",
    "check_model_options",
    "describe_model",
    "kl_to_standard_normal",
    "model_names",
    "prepare_batch",
    "register_model",
]
