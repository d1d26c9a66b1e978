"""A ``lightning.LightningModule`` VAE with a calibrated decoder head, trained by Lightning's own
``Trainer``.

The head is a submodule of the LightningModule, so everything follows it: ``.to(device)``, the
checkpoint, ``train()`` / ``eval()``, and, for ``learned_sigma``, the optimiser: its one
parameter (the shared log-sigma) is among ``self.parameters()``, which is what
``configure_optimizers`` hands to Adam. A head whose parameter is left out of the optimiser keeps
its initial sigma for ever: the bound is still valid, just loose. (``optimal_sigma`` has no
parameters: swap the name in :meth:`LitVAE.__init__` and nothing else changes.)

Data: the Frey faces shipped with sigmavae, in [0, 1] (x / 255), 1565 train / 200 val frames.

Run: ``python examples/lightning_module.py --steps 500`` (needs the ``lightning`` extra:
``pip install "sigmavae[lightning]"``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sigmavae.likelihoods as L
from sigmavae.data import load_dataset

#: Frey frames: one grey channel of 28x20 pixels.
SHAPE = (1, 28, 20)


class LitVAE(lightning.LightningModule):
    """An MLP VAE whose decoder outputs the parameters of ``self.head`` (learned sigma)."""

    def __init__(self, latent: int = 16, hidden: int = 256, lr: float = 1e-3,
                 sigma_lr: float = 1e-2, init_sigma: float = 1.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.head = L.create("learned_sigma", init_sigma=init_sigma)  # a submodule, one parameter
        dims = SHAPE[1] * SHAPE[2]
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(dims, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(),
            nn.Linear(hidden, self.head.param_channels(SHAPE[0]) * dims),
            nn.Unflatten(1, (self.head.param_channels(SHAPE[0]), *SHAPE[1:])))

    def negative_elbo(self, images: torch.Tensor) -> torch.Tensor:
        """``-ELBO`` per image, ``(B,)`` nats, of uint8 ``images`` ``(B, 1, 28, 20)``."""
        x = self.head.prepare_target(images)          # float in [0, 1]
        mean, log_var = self.encoder(x).chunk(2, 1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        nll = -self.head(self.decoder(z), target=x).log_prob(x)   # (B,) nats
        return nll + kl

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.negative_elbo(batch[0]).mean()
        self.log("train_bound", loss, prog_bar=True)
        self.log("sigma", self.head.scalar_sigma())
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val_bound", self.negative_elbo(batch[0]).mean(), batch_size=len(batch[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The head's log-sigma must be in the optimiser, or sigma never moves. It gets its own
        # learning rate: it is one number that travels from log 1 to about log 0.1 = -2.3, and
        # Adam moves a parameter by about lr per step.
        networks = [p for name, p in self.named_parameters() if not name.startswith("head.")]
        return torch.optim.Adam([
            {"params": networks},
            {"params": list(self.head.parameters()), "lr": self.hparams["sigma_lr"]},
        ], lr=self.hparams["lr"])


@dataclass
class Result:
    """What :func:`main` measured."""

    global_step: int
    initial_sigma: float
    sigma: float
    optimal_sigma: float    # sqrt of the decoder's validation MSE: where a shared sigma heads
    val_bound: float        # nats per image, eval mode
    seconds: float


def loaders(train: torch.Tensor, val: torch.Tensor, batch: int,
            seed: int) -> tuple[DataLoader, DataLoader]:
    """Train (shuffled) and val loaders of uint8 images ``(N, 1, 28, 20)``."""
    shuffle = torch.Generator().manual_seed(seed)
    return (DataLoader(TensorDataset(train), batch_size=batch, shuffle=True, generator=shuffle),
            DataLoader(TensorDataset(val), batch_size=200))


def main(steps: int = 500, batch: int = 100, lr: float = 1e-3, sigma_lr: float = 1e-2,
         seed: int = 0, root: str | Path = "lightning_example") -> Result:
    """Train :class:`LitVAE` for ``steps`` optimiser steps with ``lightning.Trainer`` on the CPU
    (files, if any, under ``root``), validate, and print the bound and the sigma."""
    torch.manual_seed(seed)
    model = LitVAE(lr=lr, sigma_lr=sigma_lr)
    train_images = load_dataset("frey", "train").images
    val_images = load_dataset("frey", "val").images
    train, val = loaders(train_images, val_images, batch, seed)
    initial = model.head.scalar_sigma()
    trainer = lightning.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, default_root_dir=str(root),
        enable_checkpointing=False, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The data are in memory: DataLoader workers would only add start-up time.
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(model, train_dataloaders=train, val_dataloaders=val)  # val each epoch
        seconds = time.perf_counter() - start
        metrics = trainer.validate(model, dataloaders=val, verbose=False)[0]
    with torch.no_grad():  # the sigma a shared Gaussian is heading for: sqrt(MSE)
        x = model.head.prepare_target(next(iter(val))[0])
        mean, log_var = model.encoder(x).chunk(2, 1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        recon = model.head.predict_mean(model.decoder(z))
        optimal = float((recon - x).pow(2).mean().sqrt())
    sigma = model.head.scalar_sigma()
    print(f"LightningModule VAE with a learned_sigma head on Frey faces in [0, 1] (x/255), "
          f"{len(train_images)} train / {len(val_images)} val images of 560 dims")
    print(f"lightning.Trainer ran {trainer.global_step} steps (batch {batch}) in {seconds:.1f} s")
    print(f"val -ELBO (eval mode; one posterior sample): {metrics['val_bound']:.1f} nats/image "
          f"(density on [0, 1]^560)")
    print(f"learned sigma: {initial:.4f} -> {sigma:.4f} (Adam, lr {sigma_lr:g}); the decoder's "
          f"val RMSE, the sigma it is heading for: {optimal:.4f}")
    return Result(global_step=trainer.global_step, initial_sigma=initial, sigma=sigma,
                  optimal_sigma=optimal, val_bound=float(metrics["val_bound"]), seconds=seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="lightning_example")
    args = parser.parse_args()
    main(steps=args.steps, seed=args.seed, root=args.root)
