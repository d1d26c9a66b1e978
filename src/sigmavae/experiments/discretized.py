"""``discretized`` (Table 4): the ELBO of the 8-bit data for the categorical, Gaussian, Gaussian
sigma-VAE and discretised Gaussian/logistic sigma-VAE decoders."""

from __future__ import annotations

import math

from . import figures
from .framework import (
    Context,
    Experiment,
    Results,
    Section,
    Verdict,
    csv_rows,
    paper_cell,
    paper_dataset,
    register_experiment,
)
from .heads import DISCRETIZED_ROWS, HeadRow, is_continuous
from .measures import continuous_bound, discrete_bound, headline_bound
from .runs import RunSpec
from .stats import Estimate, all_of, fmt_estimate, less_than


@register_experiment("discretized", "Table 4: the ELBO of the 8-bit data for categorical, "
                      "Gaussian, Gaussian sigma-VAE and discretised Gaussian/logistic sigma-VAEs")
class Discretized(Experiment):
    title = "The ELBO on discretised data"
    paper = "Table 4"
    roles = ("cifar",)

    def runs(self, ctx: Context) -> list[RunSpec]:
        return [ctx.spec("cifar", row, seed) for row in DISCRETIZED_ROWS
                for seed in ctx.seeds(row)]

    def analyse(self, ctx: Context, results: Results) -> Section:
        dataset = paper_dataset(ctx.data["cifar"])
        table = []
        for head in DISCRETIZED_ROWS:
            continuous = is_continuous(head.likelihood, head.options)
            table.append({
                "decoder": head.label,
                "-log pdf of x/255 (nats/image)": (
                    fmt_estimate(results.estimate(head.row, continuous_bound))
                    if continuous else "-"),
                "-log p of 8-bit data (nats/image)": fmt_estimate(self._eight_bit(results, head)),
                "FID (substitute features)": results.fid_cell(head.row),
                "paper -log pdf": paper_cell(4, head.row, dataset, "neg_log_pdf"),
                "paper -log p": paper_cell(4, head.row, dataset, "neg_log_p"),
                "paper FID": paper_cell(4, head.row, dataset, "fid"),
            })
        figs = figures.prior_sample_figures(
            [(h.label, results.runs(h.row)) for h in DISCRETIZED_ROWS],
            ctx.out / "samples.png")
        return Section(table, csv_rows(results), figs, [self._close(results),
                                                         self._categorical(results)])

    @staticmethod
    def _eight_bit(results: Results, head: HeadRow) -> Estimate | None:
        fn = discrete_bound if is_continuous(head.likelihood, head.options) else headline_bound
        return results.estimate(head.row, fn)

    def _close(self, results: Results) -> Verdict:
        """Close = the relative difference of the 8-bit bounds within 2% (beyond 2 SE)."""
        rows = {h.row: h for h in DISCRETIZED_ROWS}
        sigma = self._eight_bit(results, rows["sigma_vae"])
        statuses: list[bool | None] = []
        parts: list[str] = []
        for row in ("discretized_gaussian", "discretized_logistic"):
            other = self._eight_bit(results, rows[row])
            if sigma is None or other is None or sigma.stderr is None or other.stderr is None:
                statuses.append(None)
                parts.append(f"{row}: n/a")
                continue
            rel = (sigma.mean - other.mean) / abs(other.mean)
            rel_se = math.hypot(sigma.stderr, other.stderr) / abs(other.mean)
            low, high = abs(rel) - 2 * rel_se, abs(rel) + 2 * rel_se
            statuses.append(True if high <= 0.02 else False if low > 0.02 else None)
            parts.append(f"{row} {fmt_estimate(other)} ({100 * rel:+.2f}% ± "
                         f"{100 * rel_se:.2f}%)")
        return self.verdict("sigma-close-to-discretized", all_of(statuses),
                            f"sigma-VAE {fmt_estimate(sigma)} nats/image on the 8-bit data vs "
                            + "; ".join(parts))

    def _categorical(self, results: Results) -> Verdict:
        rows = {h.row: h for h in DISCRETIZED_ROWS}
        cat = self._eight_bit(results, rows["categorical"])
        comparisons, parts = [], []
        for row, head in rows.items():
            if row == "categorical":
                continue
            est = self._eight_bit(results, head)
            comparisons.append(less_than(cat, est))
            parts.append(f"{head.label} {fmt_estimate(est)}")
        return self.verdict("categorical-best-discretized", all_of(comparisons),
                            f"categorical {fmt_estimate(cat)} nats/image vs " + "; ".join(parts))


__all__ = [
    "Discretized",
]
