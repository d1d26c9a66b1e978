"""Video prediction quality: PSNR and SSIM per predicted frame, best of N samples (SVG's protocol).

The protocol of Denton & Fergus (2018, SVG-LP) and of the stochastic video-prediction papers
since: for every test sequence, condition a model on its first ``c`` frames, draw ``N`` futures
from its learned prior, score each predicted frame against the ground truth, keep per sequence
the sample with the best SSIM averaged over the predicted steps, and report that sample's PSNR
and SSIM at every step, averaged over the test sequences (with standard errors).

Functions (usable without the CLI): :func:`psnr_per_step`, :func:`ssim_per_step`,
:func:`sample_futures`, :func:`best_of_n` and :func:`plot_video_curves`; the registered metric
``video`` (``sigmavae eval --metrics video``) runs :func:`best_of_n` on the test sequences.

Settings (also in every report's rows and JSON):

* PSNR: ``10 log10(1 / MSE)`` dB per frame, the MSE over all channels and pixels of the frame,
  on the [0, 1] scale (``data_range = 1``); ``inf`` for a frame predicted exactly. (SVG's code
  averages per-channel PSNRs instead; the two agree for grey frames.)
* SSIM: Gaussian window 11 x 11 with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, data range 1
  (torchmetrics' ``structural_similarity_index_measure`` with ``gaussian_kernel=True,
  kernel_size=11, sigma=1.5, data_range=1.0``; with a Gaussian kernel torchmetrics sizes the
  window from sigma, ``2 int(3.5 sigma + 0.5) + 1 = 11``), averaged over the channels and the
  *valid* window positions, i.e. a border of 5 pixels is left out (the convention of scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, truncate=3.5,
  use_sample_covariance=False, data_range=1.0)`` and of SVG's ``finn_ssim``; torchmetrics'
  own mean would include the reflect-padded border). Frames must be at least 11 x 11.

Frames are ``(B, T, C, H, W)`` floats in [0, 1]; test sequences are uint8 ``(N, T, C, H, W)``
(intensities 0..255) or floats in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..likelihoods.base import NUM_LEVELS
from ..objective import (
    ConditionalModel,
    Model,
    compute_dtype,
    context_frames,
    images_from_params,
    is_sequence,
    model_device,
)
from ..streams import generator as stream_generator
from ._common import EvalContext, MetricUnavailable, eval_mode, fmt
from .registry import MetricOption, register_metric

#: Side of the SSIM window (pixels) and the Gaussian's standard deviation (pixels).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_SETTINGS = ("Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, data range 1, mean over "
                 "channels and the valid window positions (5-pixel border excluded, as "
                 "scikit-image and SVG)")
PSNR_SETTINGS = "10 log10(1 / MSE) dB per frame, MSE over channels and pixels, data range 1"
SELECTION = "per sequence, the sample with the highest SSIM averaged over the predicted steps"


# -- per-frame scores -----------------------------------------------------------------------------
def _check_pair(pred: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if pred.dim() != 5 or pred.shape != target.shape:
        raise ValueError(f"{what}: pred and target must be frames (B, T, C, H, W) of one shape, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise ValueError(f"{what}: pred and target must be floats in [0, 1], got {pred.dtype} "
                         f"and {target.dtype}")


def psnr_per_step(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR of every frame, ``(B, T)`` dB: ``10 log10(1 / MSE)`` with the MSE over the frame's
    channels and pixels (frames ``(B, T, C, H, W)`` floats in [0, 1]; ``inf`` where equal)."""
    _check_pair(pred, target, "psnr_per_step")
    b, t = pred.shape[:2]
    from torchmetrics.functional.image import peak_signal_noise_ratio  # ~3 s to import: on use

    values = peak_signal_noise_ratio(pred.flatten(0, 1), target.flatten(0, 1), data_range=1.0,
                                     reduction="none", dim=(1, 2, 3))
    return values.view(b, t)


def ssim_per_step(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of every frame, ``(B, T)`` (frames ``(B, T, C, H, W)`` floats in [0, 1], at least
    11 x 11 pixels). Settings: :data:`SSIM_SETTINGS` (see the module docstring)."""
    _check_pair(pred, target, "ssim_per_step")
    b, t, _, h, w = pred.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim_per_step: frames of {h}x{w} pixels are smaller than the "
                         f"{SSIM_WINDOW}x{SSIM_WINDOW} SSIM window")
    from torchmetrics.functional.image import structural_similarity_index_measure  # on use

    _, full = structural_similarity_index_measure(
        pred.flatten(0, 1), target.flatten(0, 1), gaussian_kernel=True, sigma=SSIM_SIGMA,
        kernel_size=SSIM_WINDOW, data_range=1.0, reduction="none", return_full_image=True)
    border = SSIM_WINDOW // 2  # positions whose window lies inside the frame
    return full[..., border:-border, border:-border].mean((1, 2, 3)).view(b, t)


# -- sampling the future --------------------------------------------------------------------------
def latent_per_frame(model: Model) -> int:
    """``z_dim``: the standard-normal noise per predicted frame of a conditional sequence model,
    ``latent_dim / (T - context_frames)`` (the protocol's step-major noise)."""
    given = context_frames(model)
    steps = model.data_shape[0] - given
    if given < 1 or steps < 1 or model.latent_dim % steps:
        raise ValueError(f"{type(model).__name__}: latent_dim {model.latent_dim} is not "
                         f"z_dim * (T - context_frames) with T = {model.data_shape[0]}, "
                         f"context_frames = {given}")
    return model.latent_dim // steps


def to_unit(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 intensities (or floats in [0, 1]) as floats in [0, 1] of ``dtype``."""
    if frames.dtype == torch.uint8:
        return frames.to(dtype).div_(NUM_LEVELS - 1)
    if not frames.is_floating_point():
        raise ValueError(f"frames must be uint8 or floats in [0, 1], got {frames.dtype}")
    return frames.to(dtype)


@torch.no_grad()
def sample_futures(model: Model, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Decoder means of the frames a conditional model generates after ``context``.

    ``context`` ``(B, k, C, H, W)`` floats in [0, 1] (on the model's device, its dtype);
    ``noise`` ``(B, z_dim * F)`` standard normal, step-major: ``F`` predicted frames (any
    ``F`` for a model such as SVG-LP whose ``generate(noise, context)`` runs for as many steps
    as the noise has). Returns images in [0, 1], ``(B, F, C, H, W)`` float32.

    Raises:
        ValueError: the model's parameters are not ``(B, F, P, H, W)``.
    """
    frames = noise.shape[1] // latent_per_frame(model)
    params = cast(ConditionalModel, model).generate(noise, context)
    if params.dim() != 5 or params.shape[:2] != (noise.shape[0], frames):
        raise ValueError(f"{type(model).__name__}.generate(noise, context) returned parameters "
                         f"of shape {tuple(params.shape)}; expected ({noise.shape[0]}, {frames}, "
                         "P, H, W) for noise of that many predicted frames")
    return images_from_params(model, params)


def prediction_frames(model: Model, sequence_frames: int, context: int | None = None,
                      future: int | None = None) -> tuple[int, int]:
    """``(c, F)``: the context frames given (default the model's ``context_frames``) and the
    frames predicted (default all the rest of a test sequence of ``sequence_frames``)."""
    given = context_frames(model) if context is None else int(context)
    if given < 1 or given >= sequence_frames:
        raise ValueError(f"context_frames must be in 1..{sequence_frames - 1} for test sequences "
                         f"of {sequence_frames} frames, got {given}")
    rest = sequence_frames - given
    steps = rest if future is None else int(future)
    if not 1 <= steps <= rest:
        raise ValueError(f"future_frames must be in 1..{rest} (test sequences of "
                         f"{sequence_frames} frames after {given} context frames), got {steps}")
    return given, steps


# -- best of N ------------------------------------------------------------------------------------
@dataclass
class BestOfN:
    """Per-step PSNR and SSIM of the best of ``n_samples`` futures of each test sequence.

    Attributes:
        psnr, ssim: ``(S, F)`` float64, the chosen sample's score per sequence and predicted
            step (PSNR in dB).
        chosen: ``(S,)``, the index of the chosen sample of each sequence.
        mean_ssim: ``(S, n_samples)``, every sample's SSIM averaged over the steps.
        n_samples, context_frames: ``N`` and ``c``.
    """

    psnr: torch.Tensor
    ssim: torch.Tensor
    chosen: torch.Tensor
    mean_ssim: torch.Tensor
    n_samples: int
    context_frames: int

    @property
    def time_steps(self) -> list[int]:
        """1-based positions of the predicted frames in the sequence, ``c + 1 .. c + F``."""
        return list(range(self.context_frames + 1, self.context_frames + 1 + self.psnr.shape[1]))

    @staticmethod
    def _mean_stderr(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = values.shape[0]
        if n < 2:
            return values.mean(0), torch.zeros(values.shape[1], dtype=values.dtype)
        return values.mean(0), values.std(0, unbiased=True) / math.sqrt(n)

    @staticmethod
    def _stderr_of_mean(values: torch.Tensor) -> float:
        """Standard error over the sequences of each sequence's mean over the steps."""
        per_sequence = values.mean(1)
        n = per_sequence.shape[0]
        return float(per_sequence.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0

    @property
    def psnr_curve(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard error over the sequences, ``(F,)`` each, dB."""
        return self._mean_stderr(self.psnr)

    @property
    def ssim_curve(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard error over the sequences, ``(F,)`` each."""
        return self._mean_stderr(self.ssim)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready curves, units in the key names."""
        psnr, psnr_se = self.psnr_curve
        ssim, ssim_se = self.ssim_curve
        return {
            "time_steps": self.time_steps,
            "psnr_db_per_step": psnr.tolist(), "psnr_db_stderr_per_step": psnr_se.tolist(),
            "ssim_per_step": ssim.tolist(), "ssim_stderr_per_step": ssim_se.tolist(),
            "psnr_db_mean_over_steps": float(psnr.mean()),
            "psnr_db_mean_over_steps_stderr": self._stderr_of_mean(self.psnr),
            "ssim_mean_over_steps": float(ssim.mean()),
            "ssim_mean_over_steps_stderr": self._stderr_of_mean(self.ssim),
            "num_sequences": int(self.psnr.shape[0]), "samples_per_sequence": self.n_samples,
            "context_frames": self.context_frames, "future_frames": int(self.psnr.shape[1]),
            "selection": SELECTION, "psnr_settings": PSNR_SETTINGS,
            "ssim_settings": SSIM_SETTINGS,
        }


@torch.no_grad()
def best_of_n(model: Model, sequences: torch.Tensor, n_samples: int = 100,
              context_frames: int | None = None, future_frames: int | None = None,
              generator: torch.Generator | None = None, batch_size: int = 256,
              device: torch.device | str | None = None) -> BestOfN:
    """SVG's evaluation: the best of ``n_samples`` predicted futures of every test sequence.

    For each of the ``S`` sequences (uint8 ``(S, T, C, H, W)`` or floats in [0, 1]), the model
    (in eval mode) is given the first ``c`` frames and generates ``F`` frames from its learned
    prior ``n_samples`` times (noise ``(n_samples, z_dim * F)`` per sequence, drawn in sequence
    order from ``generator`` on its device, so the result does not depend on ``batch_size``);
    every predicted frame is scored against frames ``c .. c + F - 1`` of the sequence
    (:func:`psnr_per_step`, :func:`ssim_per_step`) and the sample with the highest mean SSIM
    over the ``F`` steps is kept (its PSNR too, as SVG does).

    ``c`` defaults to the model's ``context_frames`` and ``F`` to ``T - c``: a model trained on
    ``T_model`` frames predicts as many frames as the test sequences hold after the context
    (SVG-LP generates for as many steps as it is given noise; SVG's BAIR protocol trains on 10
    future frames and scores 28), and a ``c`` other than the model's own needs a ``generate``
    that accepts that many context frames (SVG-LP uses extra frames as warm-up). Samples are
    decoded ``batch_size`` at a time (sequences and samples flattened together).

    Returns:
        :class:`BestOfN`; ``.psnr_curve`` / ``.ssim_curve`` are the mean and standard error per
        step ``(F,)``.
    """
    if sequences.dim() != 5:
        raise ValueError(f"best_of_n: sequences must be (N, T, C, H, W), got "
                         f"{tuple(sequences.shape)}")
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"best_of_n: n_samples and batch_size must be >= 1, got {n_samples} "
                         f"and {batch_size}")
    given, steps = prediction_frames(model, sequences.shape[1], context_frames, future_frames)
    device = torch.device(device) if device is not None else model_device(model)
    dtype = compute_dtype(model)
    noise_size = latent_per_frame(model) * steps
    gen_device = generator.device if generator is not None else torch.device("cpu")
    count = sequences.shape[0]
    psnr = torch.empty(count, n_samples, steps, dtype=torch.float64)
    ssim = torch.empty_like(psnr)
    per_chunk = max(1, batch_size // n_samples)  # sequences whose samples are drawn together
    with eval_mode(model):
        for first in range(0, count, per_chunk):
            seqs = sequences[first:first + per_chunk]
            k = seqs.shape[0]
            noise = torch.cat([torch.randn(n_samples, noise_size, generator=generator,
                                           device=gen_device) for _ in range(k)])
            frames = to_unit(seqs[:, :given + steps].to(device), dtype)
            context = frames[:, :given].repeat_interleave(n_samples, 0)
            truth = frames[:, given:].float().repeat_interleave(n_samples, 0)
            chunk_psnr, chunk_ssim = [], []
            for start in range(0, k * n_samples, batch_size):
                stop = start + batch_size
                pred = sample_futures(model, context[start:stop],
                                      noise[start:stop].to(device, dtype)).to(truth)
                chunk_psnr.append(psnr_per_step(pred, truth[start:stop]).double().cpu())
                chunk_ssim.append(ssim_per_step(pred, truth[start:stop]).double().cpu())
            psnr[first:first + k] = torch.cat(chunk_psnr).view(k, n_samples, steps)
            ssim[first:first + k] = torch.cat(chunk_ssim).view(k, n_samples, steps)
    mean_ssim = ssim.mean(2)
    chosen = mean_ssim.argmax(1)
    rows = torch.arange(count)
    return BestOfN(psnr=psnr[rows, chosen], ssim=ssim[rows, chosen], chosen=chosen,
                   mean_ssim=mean_ssim, n_samples=n_samples, context_frames=given)


# -- plot -----------------------------------------------------------------------------------------
def _curves_of(result: BestOfN | Mapping[str, Any]) -> tuple[list[int], list[tuple[Any, Any]],
                                                              int]:
    """Time steps, ``[(psnr, se), (ssim, se)]`` and N of a result or of its :meth:`as_dict`."""
    if isinstance(result, BestOfN):
        return (result.time_steps, [(mean.numpy(), se.numpy()) for mean, se in
                                    (result.psnr_curve, result.ssim_curve)], result.n_samples)
    arrays = [(np.asarray(result[f"{k}_per_step"]), np.asarray(result[f"{k}_stderr_per_step"]))
              for k in ("psnr_db", "ssim")]
    return list(result["time_steps"]), arrays, int(result["samples_per_sequence"])


def plot_video_curves(curves: Mapping[str, BestOfN | Mapping[str, Any]], path: str | Path,
                      title: str = "", train_frames: int | None = None,
                      band_se: float = 2.0) -> Path:
    """PNG of PSNR (dB) and SSIM against the predicted frame, one line per model or run (the
    mapping's keys are the legend), with bands of ``band_se`` standard errors over the
    sequences (said in the title).

    A curve is a :class:`BestOfN` or its :meth:`~BestOfN.as_dict` (as an eval report holds
    it). ``train_frames``: a dashed line after that time step (the end of the training horizon).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not curves:
        raise ValueError("plot_video_curves: no curves to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    parsed = {label: _curves_of(result) for label, result in curves.items()}
    for label, (steps, arrays, _) in parsed.items():
        for ax, (m, s) in zip(axes, arrays, strict=True):
            line, = ax.plot(steps, m, marker="o", markersize=3, label=label)
            ax.fill_between(steps, m - band_se * s, m + band_se * s, color=line.get_color(),
                            alpha=0.25, linewidth=0)
    n = sorted({n for _, _, n in parsed.values()})
    last_step = max(max(steps) for steps, _, _ in parsed.values())
    for ax, ylabel in zip(axes, ("PSNR (dB)", "SSIM"), strict=True):
        ax.set(xlabel="predicted frame (time step)", ylabel=ylabel,
               title=f"{ylabel.split()[0]}, best of {'/'.join(map(str, n))} samples")
        if train_frames is not None and train_frames < last_step:
            ax.axvline(train_frames + 0.5, color="grey", linestyle="--", linewidth=1,
                       label="training horizon")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[1].legend(loc="best", fontsize="small")
    bands = f"bands: {band_se:g} SE over test sequences"
    fig.suptitle(f"{title} ({bands})" if title else bands)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- the registered metric ------------------------------------------------------------------------
def require_conditional(model: Model) -> None:
    """Raise :class:`MetricUnavailable` (with the reason) unless ``model`` is a conditional
    sequence model: ``data_shape`` ``(T, C, H, W)``, ``context_frames >= 1`` and
    ``generate(noise, context)``."""
    if not is_sequence(model):
        raise MetricUnavailable(f"video prediction metrics need a sequence model (data_shape "
                                f"(T, C, H, W)); this model's examples are "
                                f"{tuple(model.data_shape)}")
    if context_frames(model) < 1:
        raise MetricUnavailable(f"{type(model).__name__} is not conditioned on past frames "
                                "(no context_frames >= 1 with generate(noise, context)): there "
                                "is no prediction to score")


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    steps = result["time_steps"]
    n = result["samples_per_sequence"]
    where = (f"best of {n} samples per sequence (max mean SSIM); {result['num_sequences']} "
             f"sequences, {result['context_frames']} context frames, steps {steps[0]}..{steps[-1]}"
             "; curves per step in the JSON")
    if result.get("plot"):
        where += f"; plot {Path(result['plot']).name}"
    rows = []
    for name, key, digits, settings in (("PSNR (dB)", "psnr_db", 2, PSNR_SETTINGS),
                                        ("SSIM", "ssim", 3, SSIM_SETTINGS)):
        curve = result[f"{key}_per_step"]
        mean = result[f"{key}_mean_over_steps"]
        value = (f"t={steps[0]}: {fmt(curve[0], digits)} → t={steps[-1]}: "
                 f"{fmt(curve[-1], digits)}")
        rows.append((f"{name}, best of {n}", value,
                     f"mean over steps {fmt(mean, digits)}; {where}; {settings}"))
    return rows


@register_metric("video", "PSNR and SSIM per predicted frame, best of N futures sampled from "
                 "the learned prior after each test sequence's context (SVG's protocol)",
                 title="video prediction PSNR/SSIM", rows=markdown_rows, options=[
                     MetricOption("video_samples", int, 100, "video: futures sampled per test "
                                  "sequence for best-of-N PSNR/SSIM (the best by mean SSIM, as "
                                  "SVG)", ge=1),
                     # also read by fvd: which frames are given and which predicted
                     MetricOption("video_context_frames", int | None, None, "video: frames "
                                  "given to the model (default: its context_frames)", ge=1),
                     MetricOption("video_future_frames", int | None, None, "video: frames "
                                  "predicted (default: the rest of each test sequence)", ge=1),
                 ])
def run(ctx: EvalContext) -> dict:
    """Options: ``video_samples`` (N, default 100), ``video_context_frames`` (default the
    model's ``context_frames``), ``video_future_frames`` (default the rest of each test
    sequence), ``video_plot_path`` (a PNG of the curves) and ``title``."""
    model = ctx.model
    require_conditional(model)
    n = int(ctx.option("video_samples"))
    result = best_of_n(model, ctx.images, n, ctx.option("video_context_frames"),
                       ctx.option("video_future_frames"),
                       generator=stream_generator(ctx.seed, "video_prior"),
                       batch_size=ctx.batch_size, device=ctx.device)
    out: dict[str, Any] = {"available": True, **result.as_dict(),
                           "units": "PSNR in dB (frames in [0, 1]); SSIM unitless in [-1, 1]"}
    plot = ctx.option("video_plot_path")
    if plot:
        label = str(ctx.option("title", type(model).__name__))
        out["plot"] = str(plot_video_curves({label: result}, plot, title=label,
                                            train_frames=model.data_shape[0]))
    return out
