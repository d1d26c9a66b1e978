"""SVG's 64x64 frame encoders and decoders (Denton & Fergus 2018): ``dcgan`` and ``vgg``.

A frame encoder maps one frame ``(N, C, 64, 64)`` (floats in [0, 1]) to a code ``(N, g_dim)`` in
``(-1, 1)`` (BatchNorm + tanh) and four skip feature maps, finest first. A frame decoder maps a
code ``(N, g_dim)`` and four skip maps (those of one frame, as the encoder returned them) to
``(N, out_channels, 64, 64)``: the likelihood head's raw parameters (SVG's decoder ends in a
sigmoid; ours has no output activation, the head maps its parameters itself).

``width`` is the channel count of the first stage (64 in SVG); the stages have ``width * (1, 2, 4,
8)`` channels. Skip maps are concatenated to the decoder's features at the matching resolution.

* ``dcgan``: four 4x4 stride-2 convs (BatchNorm, LeakyReLU(0.2)) 64 -> 32 -> 16 -> 8 -> 4, then a
  4x4 conv to ``g_dim``; skips ``(width, 32, 32)``, ``(2 width, 16, 16)``, ``(4 width, 8, 8)``,
  ``(8 width, 4, 4)``. The decoder mirrors it with 4x4 stride-2 transposed convs.
* ``vgg``: blocks of 3x3 convs (BatchNorm, LeakyReLU(0.2)) of 2, 2, 3, 3 layers at 64, 32, 16 and
  8 pixels with 2x2 max-pooling between, then a 4x4 conv on the pooled 4x4 map to ``g_dim``;
  skips ``(width, 64, 64)``, ``(2 width, 32, 32)``, ``(4 width, 16, 16)``, ``(8 width, 8, 8)``. The
  decoder mirrors it with nearest-neighbour upsampling.

Weights follow SVG's initialisation (:func:`init_weights`).
"""

from __future__ import annotations

import torch
from torch import nn

#: The frame size the backbones are built for.
FRAME_SIZE = 64
#: LeakyReLU slope of every hidden layer.
LEAKY_SLOPE = 0.2


def init_weights(module: nn.Module) -> None:
    """SVG's initialisation, for ``module.apply``: conv and linear weights ``N(0, 0.02)`` with
    zero biases; BatchNorm scales ``N(1, 0.02)`` with zero shifts (other modules untouched)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.LeakyReLU(LEAKY_SLOPE)]


def _conv3(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv (same size) + BatchNorm + LeakyReLU: one VGG layer."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), *_norm_act(cout))


def _down4(cin: int, cout: int) -> nn.Sequential:
    """4x4 stride-2 conv (halves the size) + BatchNorm + LeakyReLU: one DCGAN layer."""
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), *_norm_act(cout))


def _up4(cin: int, cout: int) -> nn.Sequential:
    """4x4 stride-2 transposed conv (doubles the size) + BatchNorm + LeakyReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), *_norm_act(cout))


def _to_code(cin: int, g_dim: int) -> nn.Sequential:
    """4x4 map -> ``(N, g_dim, 1, 1)`` code in (-1, 1)."""
    return nn.Sequential(nn.Conv2d(cin, g_dim, 4, 1, 0), nn.BatchNorm2d(g_dim), nn.Tanh())


def _from_code(g_dim: int, cout: int) -> nn.Sequential:
    """``(N, g_dim, 1, 1)`` code -> 4x4 map."""
    return nn.Sequential(nn.ConvTranspose2d(g_dim, cout, 4, 1, 0), *_norm_act(cout))


class FrameEncoder(nn.Module):
    """Base of the frame encoders: ``forward(x)`` -> ``(code (N, g_dim), [4 skip maps])``."""

    g_dim: int
    #: ``(channels, height, width)`` of the four skip maps, finest first.
    skip_shapes: list[tuple[int, int, int]]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError


class DCGANEncoder64(FrameEncoder):
    """``dcgan`` encoder: ``(N, C, 64, 64)`` -> code ``(N, g_dim)`` and skips at 32, 16, 8, 4."""

    def __init__(self, channels: int, g_dim: int, width: int = 64) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.g_dim = g_dim
        self.stages = nn.ModuleList([_down4(channels, w[0]), _down4(w[0], w[1]),
                                     _down4(w[1], w[2]), _down4(w[2], w[3])])
        self.code = _to_code(w[3], g_dim)
        self.skip_shapes = [(w[0], 32, 32), (w[1], 16, 16), (w[2], 8, 8), (w[3], 4, 4)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return self.code(x).flatten(1), skips


class DCGANDecoder64(nn.Module):
    """``dcgan`` decoder: code ``(N, g_dim)`` + skips -> ``(N, out_channels, 64, 64)``, raw."""

    def __init__(self, g_dim: int, out_channels: int, width: int = 64) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.start = _from_code(g_dim, w[3])                       # 1 -> 4
        self.stages = nn.ModuleList([_up4(2 * w[3], w[2]),          # 4 -> 8
                                     _up4(2 * w[2], w[1]),          # 8 -> 16
                                     _up4(2 * w[1], w[0])])         # 16 -> 32
        self.out = nn.ConvTranspose2d(2 * w[0], out_channels, 4, 2, 1)  # 32 -> 64

    def forward(self, code: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        y = self.start(code[:, :, None, None])
        for stage, skip in zip(self.stages, skips[:0:-1], strict=True):
            y = stage(torch.cat([y, skip], 1))
        return self.out(torch.cat([y, skips[0]], 1))


class VGGEncoder64(FrameEncoder):
    """``vgg`` encoder: ``(N, C, 64, 64)`` -> code ``(N, g_dim)`` and skips at 64, 32, 16, 8."""

    def __init__(self, channels: int, g_dim: int, width: int = 64) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.g_dim = g_dim
        self.stages = nn.ModuleList([
            nn.Sequential(_conv3(channels, w[0]), _conv3(w[0], w[0])),
            nn.Sequential(_conv3(w[0], w[1]), _conv3(w[1], w[1])),
            nn.Sequential(_conv3(w[1], w[2]), _conv3(w[2], w[2]), _conv3(w[2], w[2])),
            nn.Sequential(_conv3(w[2], w[3]), _conv3(w[3], w[3]), _conv3(w[3], w[3])),
        ])
        self.pool = nn.MaxPool2d(2, 2)
        self.code = _to_code(w[3], g_dim)
        self.skip_shapes = [(w[0], 64, 64), (w[1], 32, 32), (w[2], 16, 16), (w[3], 8, 8)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for index, stage in enumerate(self.stages):
            x = stage(x if index == 0 else self.pool(x))
            skips.append(x)
        return self.code(self.pool(x)).flatten(1), skips


class VGGDecoder64(nn.Module):
    """``vgg`` decoder: code ``(N, g_dim)`` + skips -> ``(N, out_channels, 64, 64)``, raw."""

    def __init__(self, g_dim: int, out_channels: int, width: int = 64) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.start = _from_code(g_dim, w[3])  # 1 -> 4
        self.stages = nn.ModuleList([
            nn.Sequential(_conv3(2 * w[3], w[3]), _conv3(w[3], w[3]), _conv3(w[3], w[2])),  # 8
            nn.Sequential(_conv3(2 * w[2], w[2]), _conv3(w[2], w[2]), _conv3(w[2], w[1])),  # 16
            nn.Sequential(_conv3(2 * w[1], w[1]), _conv3(w[1], w[0])),                      # 32
            nn.Sequential(_conv3(2 * w[0], w[0]), nn.Conv2d(w[0], out_channels, 3, 1, 1)),  # 64
        ])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, code: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        y = self.start(code[:, :, None, None])
        for stage, skip in zip(self.stages, skips[::-1], strict=True):
            y = stage(torch.cat([self.up(y), skip], 1))
        return y


#: Backbone name -> (encoder class, decoder class).
BACKBONES: dict[str, tuple[type[FrameEncoder], type[nn.Module]]] = {
    "dcgan": (DCGANEncoder64, DCGANDecoder64),
    "vgg": (VGGEncoder64, VGGDecoder64),
}
