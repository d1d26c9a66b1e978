"""Sample/reconstruction grids and training curves written as PNG files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from ..metrics.elbo import NOT_A_BOUND
from ..models.vae import VAE


@torch.no_grad()
def save_sample_grid(model: VAE, path: Path, n: int = 64, seed: int = 0) -> Path:
    """Decoder means of ``n`` prior samples (fixed seed: comparable across epochs)."""
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        images = model.sample(n, generator=g)
    finally:
        model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float().cpu(), path, nrow=math.ceil(math.sqrt(n)), padding=1)
    return path


@torch.no_grad()
def save_reconstruction_grid(model: VAE, images: torch.Tensor, path: Path) -> Path:
    """Rows alternate data and reconstructions (posterior mean -> decoder mean)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        recon = model.reconstruct(images.to(device)).float().cpu()
    finally:
        model.train(was_training)
    data = images.float().cpu() / 255.0
    per_row = min(8, data.shape[0])
    rows = []
    for start in range(0, data.shape[0] - per_row + 1, per_row):
        rows += [data[start:start + per_row], recon[start:start + per_row]]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(rows), path, nrow=per_row, padding=1)
    return path


def plot_curves(metrics_csv: Path, path: Path) -> Path | None:
    """Plot train/val negative ELBO and sigma/effective beta per epoch from ``epochs.csv``."""
    if not metrics_csv.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None

    def column(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "", "None", NOT_A_BOUND) else math.nan
                for r in rows]

    def note(name: str) -> str:
        return rows[-1].get(name) or ""

    epochs = column("epoch")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    train_is_bound = rows[-1].get("train_neg_elbo") != NOT_A_BOUND
    if train_is_bound:
        biased = note("train_bound_note").startswith("optimistic")
        train_label = "train (optimistic: sigma fitted per batch)" if biased else "train"
        axes[0].plot(epochs, column("train_neg_elbo"), marker="o", label=train_label)
    else:
        axes[0].plot(epochs, column("train_loss"), marker="o", label="train loss (not a bound)")
    if rows[-1].get("val_neg_elbo") != NOT_A_BOUND:
        axes[0].plot(epochs, column("val_neg_elbo"), marker="o", label="val")
    else:
        axes[0].set_title("val -ELBO n/a: not a bound", fontsize=9)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("-ELBO (nats / image)" if train_is_bound else "loss (nats / image)")
    axes[0].legend(loc="lower left", fontsize=8)  # the curves fall from the upper left
    betas = column("effective_beta")
    axes[1].set_xlabel("epoch")
    if any(math.isfinite(b) and b > 0 for b in betas):
        axes[1].plot(epochs, betas, marker="o", color="C2")
        axes[1].set_ylabel("effective beta = 2 sigma^2")
        axes[1].set_yscale("log")
    else:
        axes[1].text(0.5, 0.5, "this head has no shared sigma", ha="center", va="center",
                     transform=axes[1].transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
