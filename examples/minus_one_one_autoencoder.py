"""A convolutional VAE on images in [-1, 1] (the latent-diffusion / video convention) with a
calibrated decoder instead of an MSE weight.

Latent-diffusion style autoencoders train on ``x = 2 u - 1`` (``u`` = 8-bit image / 255) with a
reconstruction loss plus a small hand-set weight on the KL of a spatial latent. Here the decoder is
a Gaussian whose sigma is the analytic optimum (``optimal_sigma`` with ``data_range="signed"``:
sigma^2 = the batch MSE, the mean squashed by ``tanh`` into (-1, 1)), so the loss is the negative
ELBO in nats and the KL weight a hand-tuned loss would need, ``beta = 2 sigma^2``, comes out of the
data. Data: the Frey faces shipped with sigmavae (28x20 grey frames, 1565 train / 200 test).

The bound is reported three ways: nats per image of the data as scaled ([-1, 1]), the same density
on the [0, 1] scale (``- D log 2``: the change of variables ``u = (x + 1) / 2``), and the
discretised bound of the 8-bit images in bits per dimension (the same whatever the scaling).

Run: ``python examples/minus_one_one_autoencoder.py --steps 600``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

import sigmavae.likelihoods as L
from sigmavae.data import InMemoryBatches, load_dataset

#: Channels of the spatial latent (7x5 positions for 28x20 images).
LATENT_CHANNELS = 4


class ConvVAE(nn.Module):
    """``(B, 1, 28, 20)`` -> spatial latent ``(B, 4, 7, 5)`` -> decoder outputs
    ``(B, head.param_channels(1), 28, 20)`` (the head's parameters)."""

    def __init__(self, out_channels: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.SiLU(), nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * LATENT_CHANNELS, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(LATENT_CHANNELS, 2 * w, 3, 1, 1), nn.SiLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(w, w, 4, 2, 1), nn.SiLU(), nn.Conv2d(w, out_channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder outputs for one posterior sample, and the KL per image ``(B,)`` nats."""
        mean, log_var = self.encoder(x).chunk(2, 1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).flatten(1).sum(1)
        return self.decoder(z), kl


@dataclass
class Result:
    """What :func:`main` measured on the test split (per image, eval mode)."""

    first_loss: float
    last_loss: float
    bound_signed: float       # nats, density of the data in [-1, 1]
    bound_unit: float         # nats, the same density on the [0, 1] scale
    bits_per_dim: float       # discretised bound of the 8-bit images
    sigma: float              # in [-1, 1] units, after training
    first_sigma: float        # the first batch's
    data_min: float
    data_max: float
    seconds: float


@torch.no_grad()
def evaluate(model: ConvVAE, head: L.LikelihoodHead, x: torch.Tensor) -> tuple[float, float, float]:
    """Mean negative ELBO of ``x`` (one posterior sample; ``head`` in eval mode): nats per image
    on the [-1, 1] scale, on the [0, 1] scale, and the discretised 8-bit bound in bits/dim."""
    params, kl = model(x)
    dist = head(params, target=x)            # eval mode: the running sigma, not fitted to x
    nll = -dist.log_prob(x)                  # (B,) nats, density on [-1, 1]^D
    dims = x[0].numel()
    bins = -dist.bin_log_mass(dist.intensities(x)).flatten(1).sum(1)  # (B,) nats, 8-bit
    signed = float((nll + kl).mean())
    bits = float((bins + kl.double()).mean()) / (dims * math.log(2))
    return signed, signed - dims * math.log(2), bits


def main(steps: int = 600, batch: int = 64, lr: float = 1e-3, seed: int = 0,
         width: int = 32, log_every: int = 100) -> Result:
    """Train the VAE for ``steps`` steps of ``batch`` Frey frames in [-1, 1], then print the
    test bound and the sigma."""
    torch.manual_seed(seed)
    head = L.create("optimal_sigma", data_range="signed")  # mean = tanh(decoder output)
    # A decoder that already ends in tanh (or outputs the mean unbounded, as latent-diffusion
    # decoders do) takes mean_activation="identity" instead.
    train = load_dataset("frey", "train").images          # uint8 (1565, 1, 28, 20)
    test = head.prepare_target(load_dataset("frey", "test").images)  # 2 x / 255 - 1
    model = ConvVAE(head.param_channels(1), width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = InMemoryBatches(train, batch_size=batch, seed=seed)  # a new permutation per pass
    stream = itertools.chain.from_iterable(itertools.repeat(batches))
    dims = test[0].numel()
    print(f"[-1, 1] VAE on Frey faces: {len(train)} train / {len(test)} test frames of "
          f"{tuple(test.shape[1:])} = {dims} dims, scaled 2 x/255 - 1 to "
          f"[{float(test.min()):g}, {float(test.max()):g}]; spatial latent "
          f"({LATENT_CHANNELS}, 7, 5)")
    start = time.perf_counter()
    losses: list[float] = []
    first_sigma = math.nan
    for step, images in enumerate(itertools.islice(stream, steps)):
        x = head.prepare_target(images)              # in [-1, 1]
        params, kl = model(x)
        nll = -head(params, target=x).log_prob(x)   # (B,) nats; sigma^2 = batch MSE
        loss = (nll + kl).mean()                    # negative ELBO per image: no weight
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step == 0:
            first_sigma = head.scalar_sigma()
        if step % log_every == 0 or step == steps - 1:
            print(f"  step {step:4d}  train -ELBO {losses[-1]:8.1f} nats/image  sigma "
                  f"{head.scalar_sigma():.4f}")
    seconds = time.perf_counter() - start
    model.eval()
    head.eval()
    signed, unit, bits = evaluate(model, head, test)
    sigma = head.scalar_sigma()
    print(f"trained {steps} steps in {seconds:.1f} s")
    print(f"test -ELBO (eval mode, running sigma; one posterior sample), per image of {dims} dims:")
    print(f"  {signed:8.1f} nats  density of the data as scaled, [-1, 1]")
    print(f"  {unit:8.1f} nats  the same on the [0, 1] scale (- {dims} log 2)")
    print(f"  {bits:8.3f} bits/dim  discretised bound of the 8-bit images (any scaling)")
    print(f"sigma {sigma:.4f} in [-1, 1] units (= {sigma / 2:.4f} on the [0, 1] scale); it "
          f"replaces the MSE weight: SSE + beta KL with beta = 2 sigma^2 = {2 * sigma**2:.4g}")
    return Result(first_loss=losses[0], last_loss=losses[-1], bound_signed=signed,
                  bound_unit=unit, bits_per_dim=bits, sigma=sigma, first_sigma=first_sigma,
                  data_min=float(test.min()), data_max=float(test.max()), seconds=seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(steps=args.steps, batch=args.batch, seed=args.seed)
