"""The ELBO on a data set, in nats per image and bits per dimension.

Scaling (stated with every number): continuous heads are evaluated on 8-bit images divided by
255 (a density on [0, 1]^D, so ``-log p`` can be negative); discrete heads on the integer
intensities 0..255 (a probability mass, always >= 0 nats).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ..models.vae import VAE


@dataclass
class ELBOReport:
    """Averages over the evaluated images (nats per image unless stated)."""

    num_images: int
    data_dims: int
    nll: float  # distortion, E[-log p(x|z)]
    kl: float  # rate, KL(q(z|x) || p(z))
    neg_elbo: float  # nll + kl: an upper bound on -log p(x) when valid_bound
    bits_per_dim: float  # neg_elbo / (D ln 2)
    sigma: float | None
    effective_beta: float | None
    valid_bound: bool
    invalid_reason: str | None
    data_scaling: str
    samples_per_image: int

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One human line with units and scaling; invalid bounds are never printed as numbers."""
        if not self.valid_bound:
            bound = f"-ELBO n/a ({self.invalid_reason})"
        else:
            bound = (f"-ELBO {self.neg_elbo:.2f} nats/image = {self.bits_per_dim:.4f} bits/dim "
                     f"(nll {self.nll:.2f} + kl {self.kl:.2f})")
        extra = ""
        if self.sigma is not None and self.effective_beta is not None:
            extra = f"; sigma {self.sigma:.4g}, effective beta {self.effective_beta:.4g}"
        return (f"{bound}{extra}; {self.num_images} images x {self.data_dims} dims, "
                f"{self.data_scaling}")


def data_scaling(data_kind: str) -> str:
    if data_kind == "unit":
        return "continuous density on 8-bit data / 255 in [0, 1]"
    return "discrete mass on 8-bit intensities 0..255"


@torch.no_grad()
def elbo_sums(
    model: VAE, images: torch.Tensor, batch_size: int = 256, samples: int = 1, seed: int = 0,
    device: torch.device | str | None = None, shard: tuple[int, int] = (0, 1),
) -> torch.Tensor:
    """``[sum nll, sum kl, count]`` (float64, on CPU) over ``images`` x ``samples``, eval mode.

    The posterior noise of image ``i``, sample ``s`` comes from one generator seeded with
    ``seed`` (drawn for all images, on the CPU), so the result is reproducible, leaves the
    caller's RNG alone, and is the same whether one process evaluates every image or
    ``shard = (rank, world)`` makes each process evaluate images ``rank::world``.
    """
    device = device or next(model.parameters()).device
    rank, world = shard
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, images.shape[0], model.latent_dim, generator=generator)
    index = torch.arange(rank, images.shape[0], world)
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    try:
        for start in range(0, index.numel(), batch_size):
            idx = index[start:start + batch_size]
            batch = images[idx].to(device)
            for s in range(samples):
                terms = model(batch, noise=noise[s, idx].to(device))
                sums[0] += terms.nll.double().sum().cpu()
                sums[1] += terms.kl.double().sum().cpu()
                sums[2] += batch.shape[0]
    finally:
        model.train(was_training)
    return sums


def report_from_sums(model: VAE, sums: torch.Tensor, samples: int = 1) -> ELBOReport:
    """Turn :func:`elbo_sums` (possibly all-reduced over processes) into an :class:`ELBOReport`."""
    nll, kl, count = sums.tolist()
    if count == 0:
        raise ValueError("no images were evaluated")
    nll, kl = nll / count, kl / count
    head = model.head
    sigma, beta = head.sigma, head.effective_beta
    return ELBOReport(
        num_images=round(count / samples),
        data_dims=model.data_dims,
        nll=nll,
        kl=kl,
        neg_elbo=nll + kl,
        bits_per_dim=(nll + kl) / (model.data_dims * math.log(2)),
        sigma=None if sigma is None else float(sigma),
        effective_beta=None if beta is None else float(beta),
        valid_bound=bool(head.valid_bound),
        invalid_reason=head.invalid_bound_reason,
        data_scaling=data_scaling(head.data_kind),
        samples_per_image=samples,
    )


def evaluate_elbo(
    model: VAE, images: torch.Tensor, batch_size: int = 256, samples: int = 1, seed: int = 0,
    device: torch.device | str | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ELBOReport:
    """Average ELBO terms over ``images`` (``uint8 (N, C, ...)``) with the head in eval mode.

    ``samples`` posterior samples per image are averaged (1 = the paper's single-sample ELBO).
    ``reduce`` (e.g. an all-reduce sum) combines the sums of several processes.
    """
    if images.shape[0] == 0:
        raise ValueError("evaluate_elbo: no images to evaluate")
    sums = elbo_sums(model, images, batch_size, samples, seed, device)
    if reduce is not None:
        sums = reduce(sums)
    return report_from_sums(model, sums, samples)
