"""Models: the VAE container and the paper's networks."""

from .conv import ConvDecoder, ConvEncoder, build_conv_vae
from .hierarchical import HierarchicalVAE, PosteriorUnavailable, build_hierarchical_vae
from .registry import build_model, check_model_options, model_names
from .vae import VAE, ELBOTerms, kl_to_standard_normal, prepare_batch

__all__ = [
    "VAE",
    "ConvDecoder",
    "ConvEncoder",
    "ELBOTerms",
    "HierarchicalVAE",
    "PosteriorUnavailable",
    "build_conv_vae",
    "build_hierarchical_vae",
    "build_model",
    "check_model_options",
    "kl_to_standard_normal",
    "model_names",
    "prepare_batch",
]
