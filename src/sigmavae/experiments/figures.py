"""The experiments' figures: plots with units on their axes, sample grids upscaled for people."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .heads import LEARNED, OPTIMAL, SWEEP_BETAS, beta_row
from .stats import estimate

if TYPE_CHECKING:
    from .definitions import Results
    from .runs import RunResult, RunStore

#: Sample grid of each panel: GRID x GRID prior samples.
GRID = 4
#: Pixels per image cell in a saved panel (nearest-neighbour upscaling), at least 64.
CELL_PX = 72
DPI = 100


def _errorbar(ax, results: Results, rows: Sequence[str], value, betas: Sequence[float],
              label: str, **style) -> None:
    xs, ys, es = [], [], []
    for beta, row in zip(betas, rows, strict=True):
        est = results.estimate(row, value)
        if est is not None:
            xs.append(beta)
            ys.append(est.mean)
            es.append(2 * (est.stderr or 0.0))
    if xs:
        ax.errorbar(xs, ys, yerr=es, label=label, capsize=3, **style)


def _sigma_markers(ax, results: Results, value) -> None:
    from .definitions import effective_beta

    for head, marker in ((LEARNED, "s"), (OPTIMAL, "*")):
        beta = results.estimate(head.row, effective_beta)
        est = results.estimate(head.row, value)
        if beta is None or est is None:
            continue
        ax.errorbar([beta.mean], [est.mean], yerr=[2 * (est.stderr or 0.0)], fmt=marker,
                    markersize=11, capsize=3, label=f"{head.label} (at its effective beta)")


def _against_beta(results: Results, path: Path, panels: Sequence[tuple[Any, str]],
                  title: str, legend_panel: int, mark_effective: bool) -> Path | None:
    """Two panels of a per-run value against the sweep's beta (log axis, 2-SE error bars), the
    sigma-VAEs at their effective beta; ``mark_effective`` draws the optimal one's beta."""
    from .definitions import effective_beta

    rows = [beta_row(b).row for b in SWEEP_BETAS]
    if not any(results.runs(r) for r in rows):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (value, ylabel) in zip(axes, panels, strict=True):
        _errorbar(ax, results, rows, value, SWEEP_BETAS, "beta-VAE (unit variance)", fmt="o-")
        _sigma_markers(ax, results, value)
        eff = results.estimate(OPTIMAL.row, effective_beta) if mark_effective else None
        if eff is not None:
            ax.axvline(eff.mean, color="grey", linestyle="--", linewidth=1,
                       label="optimal sigma-VAE's effective beta")
        ax.set_xscale("log")
        ax.set_xlabel("beta (KL weight; 2 sigma^2 for the sigma-VAEs)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[legend_panel].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def beta_sweep_plot(results: Results, path: Path) -> Path | None:
    """Test -ELBO and FID against beta (log axis), the sigma-VAEs at their effective beta."""
    from .definitions import fid, headline_bound

    return _against_beta(results, path, [(headline_bound, "test -ELBO (nats/image, x/255)"),
                                         (fid, "FID (substitute features; lower is better)")],
                         "beta-VAE sweep against calibrated decoders (error bars: 2 SE over "
                         "seeds)", legend_panel=0, mark_effective=False)


def mi_plot(results: Results, path: Path) -> Path | None:
    """I_e(x;z) and the marginal KL against beta, the sigma-VAE's effective beta marked."""
    from .definitions import marginal_kl, mutual_info

    return _against_beta(results, path, [(mutual_info, "I_e(x;z) (nats)"),
                                         (marginal_kl, "D_KL(m(z) || p(z)) (nats)")],
                         "Mutual information and marginal KL against beta (error bars: 2 SE)",
                         legend_panel=1, mark_effective=True)


def _series(run: RunResult, column: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in run.steps():
        value = row.get(column)
        if value in (None, "", "n/a"):
            continue
        xs.append(int(row["step"]))
        ys.append(float(value))
    return xs, ys


def variance_plot(results: Results, path: Path) -> Path | None:
    """Sigma and the training -ELBO against steps: learned, optimal, constant (beta-VAE)."""
    heads = [LEARNED, OPTIMAL] + [beta_row(b) for b in SWEEP_BETAS]
    if not any(results.runs(h.row) for h in heads):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, head in enumerate(heads):
        for j, run in enumerate(sorted(results.runs(head.row), key=lambda r: r.spec.seed)):
            label = head.label if j == 0 else None
            xs, sigma = _series(run, "sigma")
            style = {"color": colors[i % len(colors)], "linewidth": 1.2, "alpha": 0.8}
            if head not in (LEARNED, OPTIMAL):
                style["linestyle"] = ":"
            if sigma:
                axes[0].plot(xs, sigma, label=label, **style)
            xs, loss = _series(run, "train_loss")
            if loss:
                axes[1].plot(xs, loss, label=label, **style)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("decoder sigma (of x/255, log scale)")
    axes[1].set_ylabel("training -ELBO (nats/image)")
    axes[1].set_title("optimal sigma's training bound is optimistic (App. C)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("training step (optimizer updates)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    lows = [min(_series(r, "train_loss")[1] or [math.inf]) for h in heads
            for r in results.runs(h.row)]
    highs = [float(np.median(_series(r, "train_loss")[1])) for h in heads
             for r in results.runs(h.row) if _series(r, "train_loss")[1]]
    if lows and highs and math.isfinite(min(lows)):
        axes[1].set_ylim(min(lows) - 0.05 * abs(min(lows)), float(np.median(highs)))
    fig.suptitle("Variance convergence (each line one seed)")
    fig.tight_layout()
    return _save(fig, path)


def _samples_png(run: RunResult, n: int, seed: int = 0) -> Path | None:
    """``sigmavae sample`` of the run's checkpoint (written once into the run folder)."""
    path = run.folder / f"samples-{n}.png"
    if not path.is_file():
        ckpt = run.folder / "checkpoints" / "last.ckpt"
        code = subprocess.call([sys.executable, "-m", "sigmavae", "sample", str(ckpt),
                                "--n", str(n), "--seed", str(seed), "--out", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if code != 0 or not path.is_file():
            return None
    return path


def sample_panels(store: RunStore, panels: Sequence[tuple[str, list[RunResult]]],
                  path: Path, columns: int = 4) -> Path | None:
    """One panel per decoder (its seed-0 run's prior samples), titled with its name."""
    from PIL import Image

    images = []
    for label, runs in panels:
        if not runs:
            continue
        run = min(runs, key=lambda r: r.spec.seed)
        png = _samples_png(run, GRID * GRID)
        if png is not None:
            images.append((label, np.asarray(Image.open(png).convert("RGB"))))
    if not images:
        return None
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    height, width = images[0][1].shape[:2]
    scale = max(1, math.ceil(CELL_PX * GRID / min(height, width)))
    panel_in = (width * scale / DPI, height * scale / DPI)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(columns * panel_in[0], rows * (panel_in[1] + 0.35)))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, image) in zip(axes.flat, images, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(label, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def stacked_images(panels: Sequence[tuple[str, Path]], path: Path) -> Path:
    """The PNGs of ``panels`` one above the other at their own pixel size (upscaled with
    nearest neighbour to at least ``CELL_PX * GRID`` pixels high), each titled with its label."""
    from PIL import Image

    images = [(label, np.asarray(Image.open(png).convert("RGB"))) for label, png in panels]
    width = max(image.shape[1] for _, image in images)
    scale = max(1, math.ceil(CELL_PX * GRID / min(image.shape[0] for _, image in images)))
    heights = [image.shape[0] * scale / DPI + 0.35 for _, image in images]
    fig, axes = plt.subplots(len(images), 1, squeeze=False, figsize=(width * scale / DPI,
                                                                     sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    for ax, (label, image) in zip(axes[:, 0], images, strict=True):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


__all__ = ["beta_sweep_plot", "estimate", "mi_plot", "sample_panels", "stacked_images",
           "variance_plot"]
