"""Named random streams: every seed the library derives from a run's ``seed``, in one place.

Each consumer of randomness draws from its own stream, so that adding draws to one (more
validation images, more FID samples) never shifts another. The offsets are part of the results'
reproducibility: changing one changes published numbers of this package.
"""

from __future__ import annotations

import torch

#: stream name -> offset added to the run's seed.
OFFSETS: dict[str, int] = {
    "train_noise": 0,  # the trainer's reparameterisation noise (one draw per global example)
    "validation_elbo": 1,  # the trainer's validation ELBO samples
    "mutual_info": 2,  # the aggregate-posterior samples of the MI / marginal-KL metric
    "calibration": 3,  # the latent samples of the calibration metric
    "fid_prior": 4,  # the prior samples whose decodings FID compares with the data
    "video_prior": 5,  # the sampled futures of the best-of-N PSNR/SSIM metric
    "fvd_prior": 6,  # the sampled futures FVD compares with the test videos
    "fid_bootstrap": 7,  # the resamples of FID's bootstrap standard error
    "fid_draws": 8,  # the draws x ~ p(x|z) of FID of draws (fid_draws)
}
#: Separates the per-image IWAE noise streams of different seeds.
IWAE_SEED_STRIDE = 1_000_003
IWAE_SEED_OFFSET = 7919


def stream_seed(seed: int, name: str) -> int:
    """The seed of stream ``name`` for a run seeded with ``seed``."""
    if name not in OFFSETS:
        raise KeyError(f"unknown random stream {name!r}; known: {', '.join(sorted(OFFSETS))}")
    return seed + OFFSETS[name]


def generator(seed: int, name: str, device: torch.device | str | None = None) -> torch.Generator:
    """A fresh :class:`torch.Generator` (on ``device``, default CPU) seeded for stream ``name``."""
    gen = torch.Generator() if device is None else torch.Generator(device=device)
    return gen.manual_seed(stream_seed(seed, name))


def iwae_image_seed(seed: int, index: int) -> int:
    """The seed of the IWAE noise of image ``index``: the same whatever the batching."""
    return (seed * IWAE_SEED_STRIDE + IWAE_SEED_OFFSET + index) % (2**63)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle (every rank uses the same)."""
    return seed + epoch
