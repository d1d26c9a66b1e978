"""Convert an existing MSE-loss VAE with one line, and compare the bounds.

The common VAE loss is ``F.mse_loss(recon, x, reduction="sum") + beta * KL``. By the paper's
Eq. 4 that is, up to a factor ``2 sigma^2`` and a constant, the negative ELBO of a Gaussian decoder
with the fixed ``sigma = sqrt(beta / 2)`` (0.707 for ``beta = 1``, whatever the data). The
conversion replaces that one line by the Gaussian negative log-likelihood with the optimal sigma
(sigma^2 = the batch MSE), ``gaussian_nll(recon, x)``; with ``beta = 1`` nothing else changes.

Both models are trained side by side (same initial weights, same batches, same noise) on the Frey
faces in [0, 1], then evaluated on the test split with one posterior sample each. Every number is
a Gaussian ELBO of the test data (a valid bound on ``-log p(x)``, nats per image, density on
``[0, 1]^560``) with a sigma that was fixed before the test data were seen:

* the MSE VAE with the sigma its loss implies, ``sqrt(beta / 2)``: what it claims to model;
* the MSE VAE with sigma refitted after training (``sqrt`` of its MSE on the training set): the
  best bound its decoder means allow, so the comparison is not just the sigma;
* the converted VAE with the same refit (its sigma during training was the batch MSE).

Run: ``python examples/convert_mse_vae.py --steps 1500``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import sigmavae.likelihoods as L
from sigmavae.data import InMemoryBatches, load_dataset


class VAE(nn.Module):
    """The usual MLP VAE (the PyTorch example's shape): the decoder ends in a sigmoid."""

    def __init__(self, dims: int = 560, hidden: int = 256, latent: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, dims)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``(B, D)`` in [0, 1] -> reconstruction ``(B, D)``, ``mu``, ``logvar``."""
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def kl_per_example(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(q(z|x) || N(0, I))`` per example, ``(B,)`` nats."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), 1)


def mse_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0) -> torch.Tensor:
    """The original loss, summed over the batch."""
    rec = F.mse_loss(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return rec + beta * kld


def calibrated_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                    beta: float = 1.0) -> torch.Tensor:
    """The converted loss: one line changed (keep ``beta = 1``: the sigma does beta's job)."""
    rec = L.gaussian_nll(recon, x)[0].sum()  # was: F.mse_loss(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return rec + beta * kld


@dataclass
class Bounds:
    """Test-set negative ELBOs (nats per image, one posterior sample) and the sigmas used."""

    implied: float         # MSE VAE, sigma = sqrt(beta / 2)
    mse_refit: float       # MSE VAE, sigma refitted on the training set
    converted: float       # converted VAE, sigma fitted on the training set
    implied_sigma: float
    mse_refit_sigma: float
    converted_sigma: float
    mse_test_mse: float    # per-pixel test MSE of each model
    converted_test_mse: float
    mse_kl: float          # mean test KL of each model, nats
    converted_kl: float


@torch.no_grad()
def fitted_sigma(model: VAE, x: torch.Tensor, generator: torch.Generator) -> float:
    """``sqrt`` of the model's reconstruction MSE on ``x`` (one posterior sample): the maximum-
    likelihood sigma of its decoder, fitted on training data."""
    torch.manual_seed(int(torch.randint(2**31, (), generator=generator)))
    recon, _, _ = model(x)
    return float((recon - x).pow(2).mean().sqrt())


@torch.no_grad()
def test_bound(model: VAE, x: torch.Tensor, sigma: float,
               seed: int) -> tuple[float, float, float]:
    """Mean ``-ELBO`` of ``x`` with a fixed ``sigma`` (nats per image), the MSE and the KL."""
    torch.manual_seed(seed)
    recon, mu, logvar = model(x)
    nll, _ = L.gaussian_nll(recon, x, sigma=sigma)  # (B,) nats, fixed sigma
    kl = kl_per_example(mu, logvar)
    return float((nll + kl).mean()), float((recon - x).pow(2).mean()), float(kl.mean())


def main(steps: int = 1500, batch: int = 100, beta: float = 1.0, lr: float = 1e-3,
         seed: int = 0, log_every: int = 250) -> Bounds:
    """Train the MSE VAE and its conversion for ``steps`` steps each, side by side, and print
    the test bound of each."""
    train = load_dataset("frey", "train").images.flatten(1).float() / 255  # (1565, 560), [0, 1]
    test = load_dataset("frey", "test").images.flatten(1).float() / 255
    torch.manual_seed(seed)
    original = VAE()
    models = {"mse": original, "converted": copy.deepcopy(original)}  # the same initial weights
    losses = {"mse": mse_loss, "converted": calibrated_loss}
    opts = {k: torch.optim.Adam(m.parameters(), lr=lr) for k, m in models.items()}
    batches = InMemoryBatches(train, batch_size=batch, seed=seed)
    stream = itertools.chain.from_iterable(itertools.repeat(batches))
    print(f"MSE VAE vs its one-line conversion on Frey faces in [0, 1] (x/255): "
          f"{len(train)} train / {len(test)} test images of {train.shape[1]} dims, "
          f"beta = {beta:g}, {steps} steps of {batch}")
    start = time.perf_counter()
    for step, x in enumerate(itertools.islice(stream, steps)):
        for name, model in models.items():
            torch.manual_seed(seed * 100_003 + step)  # the same posterior noise for both
            recon, mu, logvar = model(x)
            loss = losses[name](recon, x, mu, logvar, beta=beta) / len(x)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            if step % log_every == 0 or step == steps - 1:
                what = "SSE + beta KL" if name == "mse" else "-ELBO, nats"
                print(f"  step {step:5d}  {name:9s} loss {float(loss.detach()):9.2f} per image "
                      f"({what})")
    seconds = time.perf_counter() - start
    for model in models.values():
        model.eval()

    g = torch.Generator().manual_seed(seed)
    implied = L.sigma_from_beta(beta)  # sqrt(beta / 2), the paper's convention
    refit = {k: fitted_sigma(m, train, g) for k, m in models.items()}
    mse_implied = test_bound(models["mse"], test, implied, seed)
    mse_refit = test_bound(models["mse"], test, refit["mse"], seed)
    converted = test_bound(models["converted"], test, refit["converted"], seed)
    dims = test.shape[1]
    print(f"trained both in {seconds:.1f} s")
    print(f"test -ELBO, nats per image (Gaussian density on [0, 1]^{dims}; lower is better; "
          "one posterior sample; sigma fixed before the test data):")
    rows = [(f"MSE VAE, the sigma its loss implies, sqrt(beta/2) = {implied:.4f}", mse_implied),
            (f"MSE VAE, sigma refitted on train = {refit['mse']:.4f}", mse_refit),
            (f"converted VAE, sigma fitted on train = {refit['converted']:.4f}", converted)]
    for label, (bound, _, _) in rows:
        print(f"  {label + ':':66s} {bound:9.1f}")
    print(f"test MSE per pixel: MSE VAE {mse_implied[1]:.5f}, converted {converted[1]:.5f}; "
          f"test KL: MSE VAE {mse_implied[2]:.1f} nats, converted {converted[2]:.1f} nats")
    print(f"the converted VAE's effective beta (2 sigma^2): {2 * refit['converted']**2:.4f} "
          f"(the MSE VAE's: {beta:g})")
    return Bounds(implied=mse_implied[0], mse_refit=mse_refit[0], converted=converted[0],
                  implied_sigma=implied, mse_refit_sigma=refit["mse"],
                  converted_sigma=refit["converted"], mse_test_mse=mse_implied[1],
                  converted_test_mse=converted[1], mse_kl=mse_implied[2],
                  converted_kl=converted[2])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(steps=args.steps, beta=args.beta, seed=args.seed)
