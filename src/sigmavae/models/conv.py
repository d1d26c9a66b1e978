"""The paper's small convolutional VAE (App. B), for any image size.

Encoder: 3 conv layers (32, 64, 128 channels; kernel 3 stride 1, kernel 4 stride 2, kernel 5
stride 2) + linear layers to the posterior mean and log-variance of a 20-d latent. Decoder: a
linear layer + 3 transposed convs mirroring the encoder, the last one producing
``head.param_channels(C)`` channels. This follows the public sigma-VAE code; transposed convs are
given the encoder's feature sizes so odd sizes (e.g. Frey Face, 28x20) come back exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..likelihoods import LikelihoodHead
from .registry import register_model
from .vae import VAE


class ConvEncoder(nn.Module):
    """``(B, C, H, W)`` in [0, 1] -> ``(B, 2 * latent_dim)`` (posterior mean, log-variance)."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int,
                 channels: tuple[int, int, int]) -> None:
        super().__init__()
        c, h, w = image_shape
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, stride=1, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c3, 5, stride=2, padding=2), nn.ReLU(),
        )
        with torch.no_grad():
            sizes = []
            y = torch.zeros(1, c, h, w)
            for layer in self.features:
                y = layer(y)
                if isinstance(layer, nn.Conv2d):
                    sizes.append(tuple(y.shape[2:]))
        #: Spatial size after each conv layer, used by the decoder to invert them exactly.
        self.feature_sizes: list[tuple[int, int]] = sizes
        self.to_latent = nn.Linear(c3 * sizes[-1][0] * sizes[-1][1], 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.features(x).flatten(1))


class StrideOneTransposedConv(nn.ConvTranspose2d):
    """A stride-1 ``ConvTranspose2d`` computed as the same map written as a ``Conv2d``: the
    kernel transposed (in <-> out channels) and flipped, padding ``k - 1 - p``.

    Parameters, their layout and the state dict are those of ``nn.ConvTranspose2d`` (checkpoints
    load either way); only the kernel that runs differs. oneDNN's forward+backward of the conv
    form is faster for wide outputs (the 256-way categorical's 32 -> 768 channels, 5x5, 32x32,
    batch 32, one thread: 0.74 s vs 1.15 s in bf16, 1.30 s vs 1.40 s in float32) and slower for
    narrow ones in float32 (3 channels: 0.12 s vs 0.07 s), so it is used from ``WIDE``
    output channels on (``benchmarks/output_layer.py``).
    """

    #: output channels from which the conv form runs
    WIDE = 64

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 padding: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=padding)
        self.same_padding = kernel_size - 1 - padding  # of the equivalent Conv2d

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.out_channels < self.WIDE:
            return super().forward(x, output_size)
        weight = self.weight.transpose(0, 1).flip(2, 3)
        return F.conv2d(x, weight, self.bias, padding=self.same_padding)


class ConvDecoder(nn.Module):
    """``(B, latent_dim)`` -> head parameters ``(B, out_channels, H, W)`` (raw, no activation)."""

    def __init__(self, latent_dim: int, out_channels: int, channels: tuple[int, int, int],
                 feature_sizes: list[tuple[int, int]]) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.c3 = c3
        self.sizes = feature_sizes  # [(H, W), (H/2, W/2), (H/4, W/4)] roughly
        h3, w3 = feature_sizes[2]
        self.from_latent = nn.Linear(latent_dim, c3 * h3 * w3)
        self.up1 = nn.ConvTranspose2d(c3, c2, 6, stride=2, padding=2)
        self.up2 = nn.ConvTranspose2d(c2, c1, 6, stride=2, padding=2)
        self.out = StrideOneTransposedConv(c1, out_channels, 5, padding=2)
        self.act = nn.ReLU()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h3, w3 = self.sizes[2]
        y = self.from_latent(z).view(z.shape[0], self.c3, h3, w3)
        y = self.act(self.up1(y, output_size=self.sizes[1]))
        y = self.act(self.up2(y, output_size=self.sizes[0]))
        return self.out(y)


@register_model("conv", "the paper's small conv VAE (App. B)")
def build_conv_vae(
    image_shape: tuple[int, int, int],
    head: LikelihoodHead,
    latent_dim: int = 20,
    channels: tuple[int, int, int] = (32, 64, 128),
) -> VAE:
    """The paper's small conv VAE for images ``(C, H, W)`` (H, W >= 4) with likelihood ``head``.

    Args:
        latent_dim: size of the latent vector ``z`` (App. B: 20).
        channels: the encoder's three conv layers' channels (the decoder mirrors them).
    """
    c, h, w = image_shape
    if c < 1 or h < 4 or w < 4:
        raise ValueError(f"conv VAE needs images of shape (C, H, W) with H, W >= 4, got "
                         f"{image_shape}")
    encoder = ConvEncoder(image_shape, latent_dim, channels)
    decoder = ConvDecoder(latent_dim, head.param_channels(c), channels, encoder.feature_sizes)
    return VAE(encoder, decoder, head, latent_dim, image_shape)
