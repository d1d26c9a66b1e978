"""Decoder calibration: are the predictive distributions ``p(x|z)`` as wide as their errors?

For every data dimension of every test image, with ``z ~ q(z|x)`` (one sample per image, the
noise of the single-sample ELBO), the probability integral transform (PIT) of the 8-bit value
under ``p(x|z)`` is computed. The data are discrete, so the *randomised* PIT is used throughout,
``u = F(x^-) + V (F(x) - F(x^-))`` with ``V ~ U(0, 1)``, where ``F(x)`` and ``F(x^-)`` are the
distribution's CDF at the upper edge of the intensity bin of ``x`` and of the bin below
(:meth:`~sigmavae.likelihoods.ImageLikelihood.bin_cdf`; 0 below intensity 0):

* heads over intensities: their own ``F(x)`` and ``F(x - 1)``;
* continuous heads: the density is taken over the intensity bin of ``x`` (as for the discretised
  ELBO): ``F(x^-) = F((i - 1/2)/255)`` and ``F(x) = F((i + 1/2)/255)``, open edge bins (this equals
  the PIT of the uniformly dequantised data).

If the data are distributed as ``p(x|z)`` says, ``u ~ U(0, 1)`` exactly. Reported:

* the PIT histogram (20 bins; flat = calibrated, U-shaped = over-confident / too narrow,
  hump-shaped = under-confident / too wide);
* the coverage of the central ``c`` prediction intervals, the fraction of ``u`` in
  ``[(1 - c)/2, (1 + c)/2]``, at ``c`` = 0.5, 0.8, 0.9, 0.95 (and the grid below);
* **ECE**, the expected calibration error, defined here as the mean absolute coverage error
  ``mean_c |coverage(c) - c|`` over the 19 levels ``c = 0.05, 0.10, ..., 0.95`` (0 = calibrated;
  in probability units), with its signed version (negative = over-confident);
* ``pit_tv``, the total-variation distance of the 20-bin PIT histogram from uniform.

PIT values are accumulated into a 1000-bin histogram, so memory does not grow with the data.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import streams
from ..dataset_elbo import iter_elbo_terms
from ..likelihoods import ImageLikelihood, LikelihoodInputError
from ..objective import scored_frames
from ._common import EvalContext, MetricUnavailable, fmt
from .registry import MetricOption, register_metric

#: Central-interval levels reported individually.
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
#: Levels the ECE averages over.
ECE_LEVELS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
FINE_BINS = 1000
PLOT_BINS = 20


def pit_values(dist: ImageLikelihood, target: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomised PIT of ``target`` (the data as the head sees it, ``(B, C, ...)``) under
    ``dist``: float64 values in ``[0, 1]`` on the CPU, same shape.

    The CDFs are the distribution's own, at the edges of the 8-bit bins
    (:meth:`~sigmavae.likelihoods.ImageLikelihood.bin_cdf`), so every head is treated alike:
    continuous heads through the mass of the intensity bin of each value (see the module doc),
    heads over intensities through their pmf. ``generator`` draws the uniform ``V``.
    """
    x = dist.intensities(target)
    f_hi = dist.bin_cdf(x).double()
    below = dist.bin_cdf((x - 1).clamp_min(0)).double()  # F(x^-) = F at the bin below
    f_lo = torch.where(x <= 0, torch.zeros_like(f_hi), below)
    f_lo, f_hi = f_lo.cpu(), f_hi.cpu()
    v = torch.rand(f_lo.shape, generator=generator, dtype=torch.float64)
    return (f_lo + v * (f_hi - f_lo).clamp_min(0.0)).clamp(0.0, 1.0)


class PITHistogram:
    """Counts of PIT values in :data:`FINE_BINS` equal bins of ``[0, 1]``."""

    def __init__(self) -> None:
        self.counts = torch.zeros(FINE_BINS, dtype=torch.float64)

    def add(self, u: torch.Tensor) -> None:
        idx = (u.flatten().double() * FINE_BINS).long().clamp(0, FINE_BINS - 1)
        self.counts += torch.bincount(idx, minlength=FINE_BINS).double()

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def coverage(self, level: float) -> float:
        """Fraction of PIT values in ``[(1 - level)/2, (1 + level)/2]`` (to 1/1000)."""
        lo = round((1.0 - level) / 2 * FINE_BINS)
        hi = round((1.0 + level) / 2 * FINE_BINS)
        return float(self.counts[lo:hi].sum()) / self.total

    def histogram(self, bins: int = PLOT_BINS) -> list[float]:
        """Fractions of the PIT values in ``bins`` equal bins (sums to 1)."""
        if FINE_BINS % bins:
            raise ValueError(f"bins must divide {FINE_BINS}")
        return (self.counts.view(bins, -1).sum(1) / self.total).tolist()

    def summary(self, levels: tuple[float, ...] = DEFAULT_LEVELS) -> dict:
        if self.total == 0:
            raise ValueError("no PIT values")
        errors = [self.coverage(c) - c for c in ECE_LEVELS]
        hist = self.histogram()
        return {
            "num_values": int(self.total),
            "coverage": {f"{c:g}": self.coverage(c) for c in levels},
            "ece": sum(abs(e) for e in errors) / len(errors),
            "ece_signed": sum(errors) / len(errors),
            "pit_tv": 0.5 * sum(abs(h - 1.0 / len(hist)) for h in hist),
            "pit_histogram": hist,
            "coverage_curve": [[c, self.coverage(c)] for c in (*ECE_LEVELS, 0.99)],
        }


def plot_calibration(result: dict, path: str | Path, title: str = "") -> Path:
    """PNG with the PIT histogram and the coverage curve (observed vs nominal)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hist = result["pit_histogram"]
    bins = len(hist)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.bar([(i + 0.5) / bins for i in range(bins)], [h * bins for h in hist], width=1.0 / bins,
            edgecolor="black", linewidth=0.5)
    ax1.axhline(1.0, color="red", linestyle="--", linewidth=1, label="calibrated")
    ax1.set(xlabel="PIT u = F(x)", ylabel="density", title="PIT histogram", xlim=(0, 1))
    ax1.legend(loc="best")
    nominal = [0.0] + [c for c, _ in result["coverage_curve"]] + [1.0]
    observed = [0.0] + [o for _, o in result["coverage_curve"]] + [1.0]
    ax2.plot([0, 1], [0, 1], "r--", linewidth=1, label="calibrated")
    ax2.plot(nominal, observed, "o-", markersize=3, label="decoder")
    ax2.set(xlabel="nominal central-interval level", ylabel="observed coverage",
            title=f"coverage (ECE {result['ece']:.4f})", xlim=(0, 1), ylim=(0, 1))
    ax2.legend(loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown_rows(result: dict) -> list[tuple[str, str, str]]:
    cov = ", ".join(f"{c}: {fmt(v, 3)}" for c, v in result["coverage"].items())
    signed = result["ece_signed"]
    kind = "over-confident (intervals too narrow)" if signed < -0.01 else (
        "under-confident (intervals too wide)" if signed > 0.01 else "well calibrated")
    rows = [
        ("calibration ECE", fmt(result["ece"], 4),
         f"mean |coverage - nominal| over levels 0.05..0.95; signed {fmt(signed, 4)}: {kind}"),
        ("interval coverage", cov, "observed coverage of central intervals, by nominal level"),
        ("PIT histogram TV", fmt(result["pit_tv"], 4),
         f"distance from uniform, {len(result['pit_histogram'])} bins, "
         f"{result['num_values']} values" + (f"; plot {Path(result['plot']).name}"
                                             if result.get("plot") else "")),
    ]
    if result.get("note"):
        rows.append(("calibration note", "", result["note"]))
    return rows


@register_metric("calibration", "PIT histogram, interval coverage and ECE of the decoder "
                 "p(x|z)", title="decoder calibration", rows=markdown_rows, default=True,
                 options=[
                     MetricOption("calibration_levels", tuple[float, ...] | None, None,
                                  "calibration: the nominal levels c of the central intervals "
                                  "whose coverage is reported, comma-separated (default: "
                                  + ",".join(str(c) for c in DEFAULT_LEVELS) + ")",
                                  gt=0, lt=1, metavar="C,C,..."),
                 ])
@torch.no_grad()
def run(ctx: EvalContext) -> dict:
    """PIT histogram, coverage and ECE of ``p(x|z)`` on ``ctx.images``.

    The head answers whether its ``-log_prob`` is a valid bound on these data
    (:meth:`LikelihoodHead.bound_validity`). If it is not, and not because its parameters are
    fitted to the scored data (:attr:`LikelihoodHead.fits_test_data`), then ``p(x|z)`` is not a
    normalised distribution over these data (e.g. a head for binary data on grey levels): there
    is no predictive CDF, and the metric is unavailable with the head's reason. A head fitted to
    the scored data is calibrated, with a note that this flatters it. The uniform draws of the
    randomised PIT come from the ``"calibration"`` stream (:mod:`sigmavae.streams`).
    """
    head = ctx.head
    valid, reason = head.bound_validity(ctx.images)
    if not valid and not head.fits_test_data:
        raise MetricUnavailable(
            f"{head.name} on these data is not a distribution over the data, so it has no "
            f"predictive CDF to calibrate ({reason or 'not a valid likelihood of these data'})")
    generator = streams.generator(ctx.seed, "calibration")
    acc = PITHistogram()
    n = ctx.images.shape[0]
    for idx, terms in iter_elbo_terms(ctx.model, ctx.images, ctx.batch_size, 1, ctx.seed,
                                      ctx.device, torch.arange(n)):
        batch = ctx.images[idx]
        target = (head.prepare_target(batch) if batch.dtype == torch.uint8
                  else head.from_unit_interval(batch))
        try:
            acc.add(pit_values(terms.likelihood, scored_frames(ctx.model, target).to(ctx.device),
                               generator))
        except LikelihoodInputError as err:  # not 8-bit data: no bins for the PIT
            raise MetricUnavailable(str(err)) from err
    levels = tuple(ctx.option("calibration_levels", DEFAULT_LEVELS))
    result = {"available": True,
              "units": "probabilities (coverage, ECE, TV); PIT of the 8-bit data under p(x|z), "
                       "z ~ q(z|x), randomised within each intensity bin",
              **acc.summary(levels)}
    if head.fits_test_data:
        why = f" ({reason})" if reason else ""
        result["note"] = ("calibration is flattered: the head's parameters are fitted to the "
                          f"evaluated images themselves{why}")
    plot_path = ctx.option("plot_path")
    result["plot"] = None
    if plot_path is not None:
        result["plot"] = str(plot_calibration(result, plot_path, ctx.option("title", "")))
    return result
