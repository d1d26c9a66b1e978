"""Sample/reconstruction grids and training curves written as PNG files.

A grid is made (:func:`sample_grid`, :func:`reconstruction_grid`: the model's work, which a stop
may abandon) apart from its writing (:func:`save_grid`: quick, so that a run stopped while
drawing leaves no half-written PNG); ``save_*_grid`` do both.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import cast

import torch
from torch import nn
from torchvision.utils import make_grid, save_image

from .. import objective
from ..dataset_elbo import NOT_A_BOUND


def _frames(x: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """Images ``(n, C, H, W)`` as they are; sequences ``(n, T, C, H, W)`` as their frames
    ``(n * T, C, H, W)`` and ``T`` (one sequence a grid row)."""
    if x.dim() == 4:
        return x, None
    if x.dim() == 5:
        return x.flatten(0, 1), int(x.shape[1])
    raise ValueError(f"a grid shows images (n, C, H, W) or sequences (n, T, C, H, W), got "
                     f"shape {tuple(x.shape)}")


def save_grid(grid: torch.Tensor, path: Path) -> Path:
    """Write ``grid`` (float ``(3, H, W)`` in [0, 1], from :func:`sample_grid` or
    :func:`reconstruction_grid`) as an image file (its type from the suffix); the folder is
    made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path


def save_sample_grid(model: nn.Module, path: Path, n: int = 64, seed: int = 0,
                     context: torch.Tensor | None = None, draw: bool = False) -> Path:
    """:func:`sample_grid` written to ``path``."""
    return save_grid(sample_grid(model, n, seed, context, draw=draw), path)


def save_reconstruction_grid(model: nn.Module, images: torch.Tensor, path: Path) -> Path:
    """:func:`reconstruction_grid` written to ``path``."""
    return save_grid(reconstruction_grid(model, images), path)


@torch.no_grad()
def sample_grid(model: nn.Module, n: int = 64, seed: int = 0,
                context: torch.Tensor | None = None, draw: bool = False) -> torch.Tensor:
    """Decoder means of ``n`` prior samples (fixed seed: comparable across epochs), as one
    float ``(3, H, W)`` image in [0, 1] (``ceil(sqrt(n))`` a row, 1-pixel padding); a sequence
    model's samples are rows of frames. A conditional sequence model continues the first ``n``
    sequences of ``context`` (uint8 ``(N, T, C, H, W)``): each row is their given frames, then
    the sampled ones. With ``draw``: one draw ``x ~ p(x|z)`` at each of the same prior samples
    instead of the mean (its noise seeded with ``seed`` too; the global random state is left
    as it was)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    spec = cast(objective.Model, model)
    given = objective.context_frames(spec)
    if given and context is not None:
        n = min(n, context.shape[0])
        context = context[:n]
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [],
                                   enabled=draw):
            if draw:
                torch.manual_seed(seed)
            images = objective.sample(spec, n, generator=g, context=context if given else None,
                                      draw=draw)
    finally:
        model.train(was_training)
    images = images.float().cpu()
    if given and context is not None:
        images = torch.cat([context[:, :given].float().cpu() / 255.0, images], dim=1)
    frames, per_row = _frames(images)
    return make_grid(frames, nrow=per_row or math.ceil(math.sqrt(n)), padding=1)


@torch.no_grad()
def reconstruction_grid(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Rows alternate the uint8 ``images`` and their reconstructions (posterior mean -> decoder
    mean): 8 images a row, or one sequence's frames a row; one float ``(3, H, W)`` image in
    [0, 1]."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        recon = objective.reconstruct(cast(objective.Model, model),
                                      images.to(device)).float().cpu()
    finally:
        model.train(was_training)
    data = images.float().cpu() / 255.0
    given = objective.context_frames(cast(objective.Model, model))
    if given:  # a conditional model reconstructs the predicted frames: show the given ones too
        recon = torch.cat([data[:, :given], recon], dim=1)
    if data.dim() == 5:  # sequences: a row of data frames, then its reconstruction
        per_row = int(data.shape[1])
        rows = [frames for pair in zip(data[:8], recon[:8], strict=True) for frames in pair]
    else:
        per_row = min(8, data.shape[0])
        rows = []
        for start in range(0, data.shape[0] - per_row + 1, per_row):
            rows += [data[start:start + per_row], recon[start:start + per_row]]
    return make_grid(torch.cat(rows), nrow=per_row, padding=1)


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
