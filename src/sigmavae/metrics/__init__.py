"""Evaluation metrics: one module per metric, :mod:`.report` runs a list and renders it.

* :mod:`.elbo`: single- and multi-sample ELBO, rate and distortion, effective beta;
* :mod:`.discretized`: the ELBO of continuous heads on the 8-bit data (paper, Table 4);
* :mod:`.iwae`: the importance-weighted bound (Burda et al.);
* :mod:`.fid`: Fréchet distance of prior samples (torchmetrics; Inception or custom features);
* :mod:`.mutual_info`: ``I_e(x; z)`` and ``D_KL(m(z) || p(z))`` (paper, Sec. 5.2);
* :mod:`.active_units`: ``Cov_x(E_q[z_d]) > 0.01``;
* :mod:`.calibration`: PIT histogram, interval coverage and ECE of the decoder;
* :mod:`.video`: PSNR and SSIM per predicted frame, best of N sampled futures (SVG's protocol);
* :mod:`.fvd`: Fréchet video distance (I3D or custom features; :mod:`.frechet` is shared with FID).

Each registers itself in :data:`METRICS` (:func:`.registry.register_metric`), with the options it
reads (:class:`MetricOption`: ``evaluate_checkpoint``'s keywords, ``sigmavae eval``'s flags); a new
metric is its own module with that decorator (and :data:`.registry.BUILTIN_MODULES` for a
built-in one).
"""

from typing import Any

from ..dataset_elbo import (
    ELBOReport,
    PerImageELBO,
    data_scaling,
    elbo_per_image,
    elbo_sums,
    report_from_sums,
)
from ._common import EvalContext, MetricUnavailable
from .active_units import count_active_units
from .calibration import PITHistogram, pit_values, plot_calibration
from .discretized import discretized_log_mass
from .elbo import evaluate_elbo
from .fid import build_fid_metric, fid_from_images, inception_weights_location, prior_samples
from .frechet import frechet_distance
from .fvd import frechet_video_distance
from .iwae import iwae_per_image, log_importance_weights
from .mutual_info import MutualInfoEstimate, mutual_information
from .registry import METRICS, Metric, MetricOption, metric_options, register_metric
from .report import (
    CheckpointReport,
    EvalOptionError,
    default_metrics,
    eval_flags,
    evaluate,
    evaluate_checkpoint,
    parse_metrics,
    render_markdown,
    write_report,
)
from .video import best_of_n, plot_video_curves, psnr_per_step, ssim_per_step


def __getattr__(name: str) -> Any:
    if name == "DEFAULT_METRICS":  # the registered defaults when asked (users' metrics too)
        return tuple(default_metrics())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "CheckpointReport",
    "ELBOReport",
    "EvalContext",
    "EvalOptionError",
    "Metric",
    "MetricOption",
    "MetricUnavailable",
    "MutualInfoEstimate",
    "PITHistogram",
    "PerImageELBO",
    "best_of_n",
    "build_fid_metric",
    "count_active_units",
    "data_scaling",
    "default_metrics",
    "discretized_log_mass",
    "elbo_per_image",
    "elbo_sums",
    "eval_flags",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_elbo",
    "fid_from_images",
    "frechet_distance",
    "frechet_video_distance",
    "inception_weights_location",
    "iwae_per_image",
    "log_importance_weights",
    "metric_options",
    "mutual_information",
    "parse_metrics",
    "pit_values",
    "plot_calibration",
    "plot_video_curves",
    "prior_samples",
    "psnr_per_step",
    "register_metric",
    "render_markdown",
    "report_from_sums",
    "ssim_per_step",
    "write_report",
]
