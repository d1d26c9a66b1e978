"""A hierarchical VAE with 15 layers of latent variables (paper, Sec. 5 and App. B).

The paper used "the baseline hierarchical VAE [of BIVA] with 15 layers of latent variables,
without the top-down and bottom-up connections" for CelebA and CIFAR at 32x32. This is that model
family, written for this package:

* **bottom-up (inference) path**: a 3x3 stem, then ``stages`` resolution stages (each halving the
  size with a stride-2 conv) of residual blocks; the block output of every stochastic layer
  ``d_i`` is kept;
* **top-down (generative) path**: starting from a learned map at the coarsest resolution, layer
  ``i`` (top to bottom) computes its prior ``p(z_i | z_>i) = N(mu_p, sigma_p)`` from the
  top-down state ``h``, its posterior ``q(z_i | z_>i, x) = N(mu_q, sigma_q)`` as a correction
  of the prior computed from ``[h, d_i]`` (zero at initialisation, so q = p at the start),
  draws ``z_i`` and updates ``h <- res(h + proj(z_i))``; between stages ``h`` is upsampled; a
  final upsampling and conv give the likelihood head's parameters.

Latents are convolutional (``latent_dim`` channels at the stage's resolution); there are no skip
connections between the deterministic paths other than through the latents. The ELBO's rate is
``sum_i KL(q(z_i|z_>i,x) || p(z_i|z_>i))``, analytic per layer given the sampled ``z_>i`` (one
sample of the hierarchy, exact in expectation), summed over all latent dimensions: nats/image.

Every latent is reparameterised by standard-normal noise; all layers' noise concatenated is one
flat vector of size ``latent_dim_total`` (``VAE.latent_dim``). So the trainer's per-example noise
(identical results for any number of processes), sampling and FID work unchanged:
``model.generate(eps)`` maps prior noise ``eps ~ N(0, I)`` to a sample's head parameters. The
model follows the protocol of :mod:`sigmavae.objective` (no ``posterior``: its ``q(z|x)`` is not
one Gaussian, so it raises :class:`~sigmavae.objective.PosteriorUnavailable`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..likelihoods import LikelihoodHead
from ..objective import ModelOutput, PosteriorUnavailable
from .registry import register_model
from .vae import VAE, upcast

#: ``log sigma`` of every latent Gaussian is bounded smoothly to ``(-LOG_SIGMA_BOUND, +...)``:
#: sigma in (0.018, 55), which keeps the deep hierarchy's KL terms finite early in training.
LOG_SIGMA_BOUND = 4.0


class ResBlock(nn.Module):
    """``h + conv3x3(elu(conv3x3(elu(h))))`` at constant size and width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.elu(self.conv1(F.elu(h))))


def _bound(raw_log_sigma: torch.Tensor) -> torch.Tensor:
    return LOG_SIGMA_BOUND * torch.tanh(raw_log_sigma / LOG_SIGMA_BOUND)


def gaussian_kl(mean_q: torch.Tensor, log_sigma_q: torch.Tensor, mean_p: torch.Tensor,
                log_sigma_p: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean_q, sigma_q^2) || N(mean_p, sigma_p^2))`` summed over all but dim 0, ``(B,)``."""
    var_ratio = (2.0 * (log_sigma_q - log_sigma_p)).exp()
    mahalanobis = ((mean_q - mean_p) / log_sigma_p.exp()).pow(2)
    kl = 0.5 * (var_ratio + mahalanobis - 1.0) - (log_sigma_q - log_sigma_p)
    return kl.flatten(1).sum(1)


class BottomUp(nn.Module):
    """``x`` ``(B, C, H, W)`` in [0, 1] -> the features ``d_i`` of every stochastic layer, listed
    top (coarsest) first, each ``(B, width, h_s, w_s)``."""

    def __init__(self, in_channels: int, width: int, stages: int, layers_per_stage: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(width, width, 3, stride=2, padding=1)
                                  for _ in range(stages))
        self.blocks = nn.ModuleList(
            nn.ModuleList(ResBlock(width) for _ in range(layers_per_stage)) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(x)
        features: list[torch.Tensor] = []
        for down, blocks in zip(self.down, self.blocks, strict=True):
            h = down(F.elu(h))
            # torch types a ModuleList's items as Module; these items are ModuleLists.
            for block in blocks:  # type: ignore[attr-defined]
                h = block(h)
                features.append(h)
        return features[::-1]


class TopDownLayer(nn.Module):
    """One stochastic layer of the generative path (prior, posterior, state update)."""

    def __init__(self, width: int, latent_channels: int) -> None:
        super().__init__()
        self.prior = nn.Conv2d(width, 2 * latent_channels, 3, padding=1)
        # The posterior is parameterised relative to the prior and starts equal to it (zero
        # init), so the 15 KL terms start at 0 instead of swamping the first updates.
        self.posterior = nn.Conv2d(2 * width, 2 * latent_channels, 3, padding=1)
        nn.init.zeros_(self.posterior.weight)
        assert self.posterior.bias is not None  # Conv2d has one unless bias=False
        nn.init.zeros_(self.posterior.bias)
        self.project = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.update = ResBlock(width)

    def forward(self, h: torch.Tensor, eps: torch.Tensor, feature: torch.Tensor | None,
                log_ratio: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """New state, ``KL(q || p)`` ``(B,)`` and, if asked, ``log p(z) - log q(z)`` ``(B,)`` at
        the drawn ``z`` (both ``None`` when sampling from the prior, ``feature=None``)."""
        mean_p, raw_p = upcast(self.prior(h)).chunk(2, dim=1)
        log_sigma_p = _bound(raw_p)
        kl = ratio = None
        if feature is None:
            z = mean_p + log_sigma_p.exp() * eps
        else:
            delta_mean, delta_raw = upcast(
                self.posterior(torch.cat([h, feature], dim=1))).chunk(2, dim=1)
            mean_q, log_sigma_q = mean_p + delta_mean, _bound(raw_p + delta_raw)
            z = mean_q + log_sigma_q.exp() * eps
            kl = gaussian_kl(mean_q, log_sigma_q, mean_p, log_sigma_p)
            if log_ratio:  # the 0.5 log(2 pi) terms cancel
                log_p = -0.5 * ((z - mean_p) / log_sigma_p.exp()).pow(2) - log_sigma_p
                log_q = -0.5 * eps.pow(2) - log_sigma_q
                ratio = (log_p - log_q).flatten(1).sum(1)
        return self.update(h + self.project(z.to(h.dtype))), kl, ratio


class TopDown(nn.Module):
    """The generative path. ``forward(eps)`` maps flat prior noise ``(B, latent_dim_total)`` to
    head parameters ``(B, out_channels, H, W)`` (a sample from the hierarchical prior)."""

    def __init__(self, image_hw: tuple[int, int], stage_sizes: list[tuple[int, int]],
                 width: int, layers_per_stage: int, latent_channels: int,
                 out_channels: int) -> None:
        super().__init__()
        self.image_hw = image_hw
        self.stage_sizes = stage_sizes[::-1]  # coarsest first
        self.layers_per_stage = layers_per_stage
        self.latent_channels = latent_channels
        top_h, top_w = self.stage_sizes[0]
        self.start = nn.Parameter(torch.zeros(1, width, top_h, top_w))
        self.layers = nn.ModuleList(TopDownLayer(width, latent_channels)
                                    for _ in range(len(stage_sizes) * layers_per_stage))
        self.up = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in stage_sizes)
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)
        #: Shape ``(C_z, h, w)`` of every latent layer, top first.
        self.latent_shapes = [(latent_channels, *size) for size in self.stage_sizes
                              for _ in range(layers_per_stage)]
        self.latent_dim_total = sum(math.prod(s) for s in self.latent_shapes)

    def split_noise(self, eps: torch.Tensor) -> list[torch.Tensor]:
        """Flat noise ``(B, latent_dim_total)`` -> one ``(B, C_z, h, w)`` tensor per layer."""
        if eps.dim() != 2 or eps.shape[1] != self.latent_dim_total:
            raise ValueError(f"hierarchical VAE: noise must have shape (B, "
                             f"{self.latent_dim_total}), got {tuple(eps.shape)}")
        sizes = [math.prod(s) for s in self.latent_shapes]
        return [part.reshape(eps.shape[0], *shape)
                for part, shape in zip(eps.split(sizes, dim=1), self.latent_shapes, strict=True)]

    def run(self, eps: torch.Tensor, features: list[torch.Tensor] | None,
            log_ratio: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Head parameters, the summed KL ``(B,)`` and, if asked, the summed
        ``log p(z) - log q(z|x)`` ``(B,)`` (both ``None`` without ``features``)."""
        noises = self.split_noise(eps)
        h = self.start.expand(eps.shape[0], -1, -1, -1)
        kl_total = ratio_total = None
        for index, (layer, noise) in enumerate(zip(self.layers, noises, strict=True)):
            stage = index // self.layers_per_stage
            if index % self.layers_per_stage == 0 and stage > 0:
                h = self._upsample(h, stage, self.stage_sizes[stage])
            feature = None if features is None else features[index]
            h, kl, ratio = layer(h, noise.to(h.device), feature, log_ratio)
            if kl is not None:
                kl_total = kl if kl_total is None else kl_total + kl
            if ratio is not None:
                ratio_total = ratio if ratio_total is None else ratio_total + ratio
        h = self._upsample(h, len(self.stage_sizes), self.image_hw)
        return self.out(F.elu(h)), kl_total, ratio_total

    def _upsample(self, h: torch.Tensor, stage: int, size: tuple[int, int]) -> torch.Tensor:
        return self.up[stage - 1](F.interpolate(h, size=size, mode="nearest"))

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        return self.run(eps, None)[0]


class HierarchicalVAE(VAE):
    """A :class:`VAE` whose latent is a top-down hierarchy (see the module docstring).

    ``latent_dim`` is the total number of latent dimensions over all layers; ``noise`` arguments
    are flat standard-normal draws of that size.
    """

    encoder: BottomUp
    decoder: TopDown

    @property
    def num_latent_layers(self) -> int:
        return len(self.decoder.layers)

    def posterior(self, x: torch.Tensor):
        raise PosteriorUnavailable(
            "the hierarchical VAE's q(z|x) is not one diagonal Gaussian (each layer depends on "
            "the layers above it); this needs a single-latent model such as 'conv'")

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> ModelOutput:
        """Run the inference and generative paths on ``x`` (floats in [0, 1], ``(B, C, H, W)``)
        with flat noise ``(B, latent_dim)`` (drawn here if ``None``; cast to the model's
        precision).

        ``kl`` is the sum over the ``num_latent_layers`` layers of the analytic per-layer KL given
        the sampled layers above; ``log_prior_ratio`` sums ``log p(z_i|z_>i) - log q(z_i|z_>i, x)``
        over every layer; ``z`` is the noise.
        """
        if noise is None:
            noise = torch.randn(x.shape[0], self.latent_dim, device=x.device)
        noise = noise.to(self.compute_dtype)
        params, kl, log_ratio = self.decoder.run(noise, self.encoder(x), log_ratio=True)
        assert kl is not None and log_ratio is not None
        return ModelOutput(params=params, kl=kl, log_prior_ratio=log_ratio, z=noise)


@register_model("hierarchical", "15 layers of latent variables (BIVA's baseline hierarchical VAE)")
def build_hierarchical_vae(
    image_shape: tuple[int, int, int],
    head: LikelihoodHead,
    latent_dim: int = 8,
    layers: int = 15,
    stages: int = 3,
    width: int = 64,
) -> HierarchicalVAE:
    """The 15-layer hierarchical VAE for images ``(C, H, W)`` with likelihood ``head``.

    Args:
        latent_dim: latent channels of every stochastic layer (each layer is ``latent_dim`` x
            its stage's resolution: for 32x32 images and 3 stages, 16x16, 8x8 and 4x4).
        layers: stochastic layers in all, split evenly over ``stages`` resolution stages.
        stages: resolution stages, each halving the image size (``layers`` must be a multiple).
        width: channels of the deterministic paths.
    """
    c, h, w = image_shape
    if layers < 1 or stages < 1 or layers % stages:
        raise ValueError(f"hierarchical VAE: layers ({layers}) must be a positive multiple of "
                         f"stages ({stages})")
    if min(h, w) < 2 ** stages:
        raise ValueError(f"hierarchical VAE: images {h}x{w} are too small for {stages} stages "
                         f"(each halves the size); need H, W >= {2 ** stages}")
    if latent_dim < 1 or width < 1:
        raise ValueError(f"hierarchical VAE: latent_dim and width must be >= 1, got "
                         f"{latent_dim}, {width}")
    sizes, (sh, sw) = [], (h, w)
    for _ in range(stages):
        sh, sw = (sh + 1) // 2, (sw + 1) // 2  # a stride-2, padding-1, kernel-3 conv
        sizes.append((sh, sw))
    per_stage = layers // stages
    encoder = BottomUp(c, width, stages, per_stage)
    decoder = TopDown((h, w), sizes, width, per_stage, latent_dim, head.param_channels(c))
    return HierarchicalVAE(encoder, decoder, head, decoder.latent_dim_total, image_shape)
