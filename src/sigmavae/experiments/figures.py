"""The experiments' figures: plots with units on their axes, sample grids upscaled for people."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .framework import Results
from .heads import LEARNED, OPTIMAL, SWEEP_BETAS, beta_row
from .measures import effective_beta, fid, headline_bound, marginal_kl_bounds, mutual_info_bounds
from .runs import RunResult
from .stats import estimate

#: Sample grid of each panel: GRID x GRID prior samples.
GRID = 4
#: Pixels per image cell in a saved panel (nearest-neighbour upscaling), at least 64.
CELL_PX = 72
DPI = 100


def _sweep_series(results: Results, value: Callable[[RunResult], float | None],
                  betas: Sequence[float] = SWEEP_BETAS
                  ) -> tuple[list[float], list[float], list[float]]:
    """``(betas, means, 2 SE)`` of a per-run value over the sweep's ``betas`` that have runs."""
    xs, ys, es = [], [], []
    for beta in betas:
        est = results.estimate(beta_row(beta).row, value)
        if est is not None:
            xs.append(beta)
            ys.append(est.mean)
            es.append(2 * (est.stderr or 0.0))
    return xs, ys, es


def _band(ax, xs: Sequence[float], ys: Sequence[float], es: Sequence[float], label: str,
          **style) -> None:
    """A line with markers and its 2-SE band (error bars too: a band alone hides small SEs)."""
    if not xs:
        return
    lines = ax.errorbar(xs, ys, yerr=es, label=label, capsize=3, **style)
    low = np.asarray(ys) - np.asarray(es)
    high = np.asarray(ys) + np.asarray(es)
    ax.fill_between(xs, low, high, color=lines[0].get_color(), alpha=0.18, linewidth=0)


def _sigma_markers(ax, results: Results, value: Callable[[RunResult], float | None],
                   annotate: bool = False) -> None:
    for head, marker, offset in ((LEARNED, "s", (6, 6)), (OPTIMAL, "*", (6, -12))):
        beta = results.estimate(head.row, effective_beta)
        est = results.estimate(head.row, value)
        if beta is None or est is None:
            continue
        ax.errorbar([beta.mean], [est.mean], yerr=[2 * (est.stderr or 0.0)], fmt=marker,
                    markersize=11, capsize=3, label=f"{head.label} (at its effective beta)")
        if annotate:
            _annotate(ax, beta.mean, est.mean, offset)


def _annotate(ax, x: float, y: float, offset: tuple[int, int] = (6, 4)) -> None:
    ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=offset, fontsize=7)


def _finish_beta_axis(ax, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("beta (KL weight; 2 sigma^2 for the sigma-VAEs)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


#: The beta-sweep figure's zoom: the configurations whose test bound is this close to the best.
ZOOM_NATS = 50.0


def beta_sweep_plot(results: Results, path: Path,
                    betas: Sequence[float] = SWEEP_BETAS) -> Path | None:
    """Test -ELBO and FID against ``betas`` (log axis), the sigma-VAEs at their effective beta,
    and a zoom on the configurations within :data:`ZOOM_NATS` of the best bound.

    The bound spans thousands of nats of both signs: its axis is symmetric-log (linear within
    +-100 nats) and every mean is printed beside its point, so that neighbours such as -1,306
    and -880 stay apart; the zoom (linear, 2-SE bars) tells apart bounds a few nats apart that
    the symlog axis draws on top of each other."""
    if not any(results.runs(beta_row(b).row) for b in betas):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8), width_ratios=[1.2, 0.8, 1.2])
    xs, ys, es = _sweep_series(results, headline_bound, betas)
    _band(axes[0], xs, ys, es, "beta-VAE (unit variance)", fmt="o-")
    for x, y in zip(xs, ys, strict=True):
        _annotate(axes[0], x, y)
    _sigma_markers(axes[0], results, headline_bound)
    axes[0].set_yscale("symlog", linthresh=100)
    _finish_beta_axis(axes[0], "test -ELBO (nats/image, x/255; symlog axis)")
    _near_best_panel(axes[1], results, betas)
    _band(axes[2], *_sweep_series(results, fid, betas), "beta-VAE (unit variance)", fmt="o-")
    _sigma_markers(axes[2], results, fid)
    _finish_beta_axis(axes[2], "FID (substitute features; lower is better)")
    # below the panels: inside, it would cover the sweep's minimum or its printed means
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=9)
    fig.suptitle("beta-VAE sweep against calibrated decoders (bars and bands: 2 SE over seeds)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def _near_best_panel(ax, results: Results, betas: Sequence[float]) -> None:
    """The test bounds within :data:`ZOOM_NATS` of the best, one row per configuration, on a
    linear axis with 2-SE bars and each mean printed."""
    rows = []
    for head in [*(beta_row(b) for b in betas), LEARNED, OPTIMAL]:
        est = results.estimate(head.row, headline_bound)
        if est is None:
            continue
        beta = results.estimate(head.row, effective_beta)
        name = head.label
        if head in (LEARNED, OPTIMAL) and beta is not None:
            name += f"\n(effective beta {beta.mean:.3g})"
        rows.append((name, est))
    if not rows:
        ax.set_axis_off()
        return
    best = min(est.mean for _, est in rows)
    rows = [(name, est) for name, est in rows if est.mean <= best + ZOOM_NATS]
    for i, (_, est) in enumerate(rows):
        ax.errorbar([est.mean], [i], xerr=[2 * (est.stderr or 0.0)], fmt="o", capsize=4)
        ax.annotate(f"{est.mean:,.1f}", (est.mean, i), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("test -ELBO (nats/image, x/255; linear)")
    ax.set_title(f"within {ZOOM_NATS:.0f} nats/image of the best (2-SE bars)", fontsize=9)
    ax.grid(alpha=0.3, axis="x")


def _side(bounds: Callable[[RunResult], tuple[float | None, float | None]],
          index: int) -> Callable[[RunResult], float | None]:
    """The lower (0) or upper (1) end of a per-run ``(low, high)``."""
    return lambda run: bounds(run)[index]


def mi_plot(results: Results, path: Path) -> Path | None:
    """I_e(x;z) and the marginal KL against beta, with their two estimates where they differ
    (in-sample, capped at log N; leave-one-out), the line at log N and the optimal sigma-VAE's
    effective beta."""
    if not any(results.runs(beta_row(b).row) for b in SWEEP_BETAS):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    panels = ((mutual_info_bounds, "I_e(x;z) (nats)", ("in-sample (at most log N)",
                                                         "leave-one-out (upper bound)")),
              (marginal_kl_bounds, "D_KL(m(z) || p(z)) (nats)",
               ("rate - leave-one-out I_e (lower bound)", "rate - in-sample I_e (upper bound)")))
    for ax, (bounds, ylabel, names) in zip(axes, panels, strict=True):
        low = _sweep_series(results, _side(bounds, 0))
        high = _sweep_series(results, _side(bounds, 1))
        _band(ax, *low, f"beta-VAE: {names[0]}", fmt="o-")
        if high[1] != low[1]:
            _band(ax, *high, f"beta-VAE: {names[1]}", fmt="o--", markerfacecolor="none")
        _sigma_markers(ax, results, _side(bounds, 0))
        eff = results.estimate(OPTIMAL.row, effective_beta)
        if eff is not None:
            ax.axvline(eff.mean, color="grey", linestyle="--", linewidth=1,
                       label="optimal sigma-VAE's effective beta")
        _finish_beta_axis(ax, ylabel)
    ceilings = {float(c) for h in (*[beta_row(b) for b in SWEEP_BETAS], LEARNED, OPTIMAL)
                for r in results.runs(h.row)
                for c in [r.metric("mi").get("mutual_info_ceiling_log_n_nats")] if c is not None}
    for ceiling in sorted(ceilings):
        axes[0].axhline(ceiling, color="black", linestyle=":", linewidth=1,
                        label=f"log N = {ceiling:.2f} (the in-sample ceiling)")
    for ax in axes:
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Mutual information and marginal KL against beta (bars and bands: 2 SE over "
                 "seeds)")
    fig.tight_layout()
    return _save(fig, path)


def _series(run: RunResult, column: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in run.steps():
        value = row.get(column)
        if value in (None, "", "n/a"):
            continue
        xs.append(int(row["step"]))
        ys.append(float(value))
    return xs, ys


def _mean_curve(runs: Sequence[RunResult], column: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(steps, mean, 2 SE)`` over seeds of a ``steps.csv`` column, on the steps all share."""
    series = [dict(zip(*_series(r, column), strict=True)) for r in runs]
    series = [s for s in series if s]
    if not series:
        return None
    steps = sorted(set.intersection(*(set(s) for s in series)))
    values = np.array([[s[t] for t in steps] for s in series])
    mean = values.mean(0)
    two_se = (2 * values.std(0, ddof=1) / math.sqrt(len(series)) if len(series) > 1
              else np.zeros_like(mean))
    return np.asarray(steps), mean, two_se


def variance_plot(results: Results, path: Path) -> Path | None:
    """Sigma and the training -ELBO against steps, one curve per decoder (the mean over seeds
    with its 2-SE band): learned, optimal, and the constant sigma of each beta-VAE."""
    heads = [LEARNED, OPTIMAL] + [beta_row(b) for b in SWEEP_BETAS]
    if not any(results.runs(h.row) for h in heads):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, head in enumerate(heads):
        runs = results.runs(head.row)
        style = {"color": colors[i % len(colors)], "linewidth": 1.4,
                 "linestyle": "-" if head in (LEARNED, OPTIMAL) else ":"}
        label = f"{head.label} ({len(runs)} seed{'s' if len(runs) != 1 else ''})"
        for ax, column in zip(axes, ("sigma", "train_loss"), strict=True):
            curve = _mean_curve(runs, column)
            if curve is None:
                continue
            steps, mean, two_se = curve
            ax.plot(steps, mean, label=label, **style)
            ax.fill_between(steps, mean - two_se, mean + two_se, color=style["color"],
                            alpha=0.2, linewidth=0)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("decoder sigma (of x/255, log scale)")
    axes[1].set_ylabel("training -ELBO (nats/image; symlog axis)")
    axes[1].set_title("optimal sigma's training bound is optimistic (App. C)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("training step (optimizer updates)")
        ax.grid(alpha=0.3)
    # the bounds span thousands of nats of both signs: every curve stays on a symmetric-log axis
    axes[1].set_yscale("symlog", linthresh=100)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("Variance convergence (mean over seeds, band: 2 SE)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, path)


def _samples_png(run: RunResult, n: int, seed: int = 0, draws: bool = False) -> Path | None:
    """``sigmavae sample [--draws]`` of the run's checkpoint, written once into the run folder
    (``samples-{n}.png``, ``samples-draws-{n}.png``: a record keeps them); None where it has
    neither the PNG nor a checkpoint to make it from, or the sampling failed (no draw at a prior
    sample)."""
    path = run.folder / f"samples-{'draws-' if draws else ''}{n}.png"
    if not path.is_file():
        ckpt = run.folder / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            return None
        code = subprocess.call([sys.executable, "-m", "sigmavae", "sample", str(ckpt),
                                "--n", str(n), "--seed", str(seed), "--out", str(path),
                                *(["--draws"] if draws else [])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if code != 0 or not path.is_file():
            return None
    return path


def sample_panel_images(panels: Sequence[tuple[str, list[RunResult]]], draws: bool = False
                        ) -> list[tuple[str, np.ndarray]]:
    """Per decoder ``(label, runs)``, the prior samples of its lowest seed that has them
    (decoder means, or with ``draws`` one draw from ``p(x|z)`` each, only from runs whose FID
    of draws was measured; made from the checkpoint where not yet written) as an RGB array,
    titled with its label (and the seed where not 0); a decoder with none is left out."""
    from PIL import Image

    images = []
    for label, runs in panels:
        for run in sorted(runs, key=lambda r: r.spec.seed):
            if draws and not run.metric("fid_draws").get("available"):
                continue  # no FID of draws: not measured, or no draw at a prior sample
            png = _samples_png(run, GRID * GRID, draws=draws)
            if png is not None:
                title = label if run.spec.seed == 0 else f"{label} (seed {run.spec.seed})"
                images.append((title, np.asarray(Image.open(png).convert("RGB"))))
                break
    return images


def sample_panels(panels: Sequence[tuple[str, list[RunResult]]], path: Path,
                  columns: int = 4, draws: bool = False) -> Path | None:
    """One panel per decoder (:func:`sample_panel_images`) in a figure at ``path``; None where
    no decoder has samples."""
    images = sample_panel_images(panels, draws)
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


def prior_sample_figures(panels: Sequence[tuple[str, list[RunResult]]], path: Path,
                         draws: Path | None = None) -> list[tuple[str, Path]]:
    """A report's figure of prior samples, one panel per decoder (:func:`sample_panels`), with
    its caption; with ``draws``, a second figure there of one draw from ``p(x|z)`` at each of
    the same prior latents; empty where no run has samples."""
    figs = []
    grid = sample_panels(panels, path)
    if grid is not None:
        figs.append(("Prior samples (decoder means, seed-0 run of each decoder), upscaled with "
                     "nearest neighbour", grid))
    grid = None if draws is None else sample_panels(panels, draws, draws=True)
    if grid is not None:
        figs.append(("The same prior latents, each shown as one draw x ~ p(x|z) instead of the "
                     "decoder's mean (what the FID of draws scores), from the lowest seed whose "
                     "FID of draws was measured (named where not 0), upscaled with nearest "
                     "neighbour", grid))
    return figs


def stacked_images(panels: Sequence[tuple[str, Path]], path: Path,
                   row_labels: Sequence[str] | None = None, columns: int | None = None,
                   context: int = 0) -> Path:
    """The PNGs of ``panels`` one above the other at their own pixel size (upscaled with
    nearest neighbour to at least ``CELL_PX * GRID`` pixels high), each titled with its label.

    A grid of frames can be labelled: ``row_labels`` names its rows (evenly spaced), ``columns``
    numbers its frames, the first ``context`` of them marked as given (a line after them)."""
    from PIL import Image

    images = [(label, np.asarray(Image.open(png).convert("RGB"))) for label, png in panels]
    width = max(image.shape[1] for _, image in images)
    scale = max(1, math.ceil(CELL_PX * GRID / min(image.shape[0] for _, image in images)))
    heights = [image.shape[0] * scale / DPI + 0.35 for _, image in images]
    margin = 1.8 if row_labels else 0.0  # inches for the row labels
    fig, axes = plt.subplots(len(images), 1, squeeze=False,
                             figsize=(width * scale / DPI + margin, sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    for ax, (label, image) in zip(axes[:, 0], images, strict=True):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        if not row_labels:
            ax.axis("off")
            continue
        height, width = image.shape[:2]
        ax.set_yticks([(i + 0.5) * height / len(row_labels) for i in range(len(row_labels))],
                      list(row_labels), fontsize=8)
        if columns:
            step = width / columns
            ax.set_xticks([(t + 0.5) * step for t in range(columns)],
                          [f"{t + 1}" for t in range(columns)], fontsize=7)
            ax.set_xlabel(f"frame (1-{context}: given context; after the line: predicted)"
                          if context else "frame", fontsize=8)
            if context:
                ax.axvline(context * step - 0.5, color="red", linewidth=1.5)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


__all__ = ["beta_sweep_plot", "estimate", "mi_plot", "prior_sample_figures",
           "sample_panel_images", "sample_panels", "stacked_images", "variance_plot"]
