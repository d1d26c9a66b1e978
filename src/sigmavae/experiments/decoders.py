"""``decoders`` (Tables 2 and 3, Figures 2, 3, 5, 6, 8): every decoder of the paper on one model
and data set: bound, FID and sample grids."""

from __future__ import annotations

from collections.abc import Callable

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
from .heads import DECODER_ROWS, LEARNED, OPTIMAL, PER_IMAGE, HeadRow, is_continuous
from .measures import discrete_bound, fid, fid_draws, headline_bound, invalid_reason
from .runs import RunResult, RunSpec
from .stats import all_of, fmt_estimate, less_than
from .sweep import best_beta

#: What the table's two FID columns show, and which one the verdicts use.
DRAWS_NOTE = ("FID compares prior samples shown as the decoder's mean (the FID column, which the "
              "verdicts use for every decoder alike) or as one draw x ~ p(x|z) at each of the "
              "same latents (the draws column, metric fid_draws): a multimodal decoder's mean "
              "(the logistic mixture's, the categorical's) averages its modes, and a continuous "
              "head's draw adds its noise. The paper does not say which it scored. Records "
              "evaluated before fid_draws existed, whose checkpoints stayed on another machine, "
              "have no draws FID (n/a).")


@register_experiment("decoders", "Tables 2 and 3: every decoder of the paper on one model and "
                      "data set, bound, FID and sample grids")
class Decoders(Experiment):
    title = "Decoder distributions compared"
    paper = "Tables 2 and 3, Figures 2, 3, 5, 6, 8"

    def _rows(self, ctx: Context) -> tuple[list[HeadRow], str]:
        beta, why = best_beta(ctx)
        rows = list(DECODER_ROWS)
        beta_vae = HeadRow("beta_vae", f"beta-VAE, beta = {beta:g}", "fixed_sigma",
                           {"beta": float(beta)})
        rows.insert(rows.index(LEARNED), beta_vae)
        return rows, why

    def runs(self, ctx: Context) -> list[RunSpec]:
        rows, _ = self._rows(ctx)
        return [ctx.spec("svhn", row, seed) for row in rows for seed in ctx.seeds(row)]

    def analyse(self, ctx: Context, results: Results) -> Section:
        rows, why = self._rows(ctx)
        data = ctx.data["svhn"]
        dataset = paper_dataset(data)
        table_no = 2 if dataset == "svhn" else 3
        table = []
        for head in rows:
            runs = results.runs(head.row)
            continuous = is_continuous(head.likelihood, head.options)
            reason = invalid_reason(runs[0]) if runs else None
            bound = results.estimate(head.row, headline_bound)
            table.append({
                "decoder": head.label,
                "-log p bound (nats/image)": (fmt_estimate(bound) if reason is None
                                              else f"n/a ({reason})"),
                "data the bound is on": "x/255 (density)" if continuous else "8-bit",
                "-log p on 8-bit data": (fmt_estimate(results.estimate(head.row, discrete_bound))
                                         if continuous else "(same)"),
                "FID (substitute features)": results.fid_cell(head.row),
                "FID of draws from p(x|z)": fmt_estimate(results.estimate(head.row, fid_draws)),
                "paper -log p": paper_cell(table_no, head.row, dataset, "neg_log_p"),
                "paper FID": paper_cell(table_no, head.row, dataset, "fid"),
            })
        figs = figures.prior_sample_figures(
            [(h.label, results.runs(h.row)) for h in rows], ctx.out / "samples.png",
            draws=ctx.out / "samples-draws.png")
        pair = figures.sample_panels(
            [(OPTIMAL.label, results.runs(OPTIMAL.row)),
             ("Gaussian VAE (unit variance)", results.runs("gaussian"))],
            ctx.out / "sigma-vae-vs-gaussian.png")
        if pair:
            figs.append(("The optimal sigma-VAE against the unit-variance Gaussian VAE "
                         "(the paper's Figures 2, 5, 6, 8)", pair))
        verdicts = [self._gaussian_worst(results, rows), self._per_pixel(results),
                    self._mixture_best(results),
                    self._pair("optimal-bound-beats-learned", results, OPTIMAL, LEARNED,
                               headline_bound, "neg_log_p", " nats/image", table_no, dataset),
                    self._pair("per-image-better-samples", results, PER_IMAGE, OPTIMAL, fid,
                               "fid", " (FID)", table_no, dataset)]
        return Section(table, csv_rows(results), figs, verdicts,
                       notes=[f"The beta-VAE row uses {why}.", DRAWS_NOTE,
                              f"Published numbers: Table {table_no}, {dataset or 'no matching'} "
                              "column (small conv model)."])

    def _gaussian_worst(self, results: Results, rows: list[HeadRow]) -> Verdict:
        gauss = results.estimate("gaussian", fid)
        others = [h for h in rows if h.row not in ("gaussian", "per_pixel_sigma", "bernoulli")]
        comparisons, parts = [], []
        for head in others:
            est = results.estimate(head.row, fid)
            comparisons.append(less_than(est, gauss))
            parts.append(f"{head.label} {fmt_estimate(est)}")
        return self.verdict("gaussian-worst-samples", all_of(comparisons),
                            f"FID of the Gaussian VAE {fmt_estimate(gauss)} vs " + "; ".join(parts)
                            + _draws_aside(results, others))

    def _per_pixel(self, results: Results) -> Verdict:
        pp_bound = results.estimate("per_pixel_sigma", headline_bound)
        g_bound = results.estimate("gaussian", headline_bound)
        pp_fid = results.estimate("per_pixel_sigma", fid)
        opt_fid = results.estimate(OPTIMAL.row, fid)
        status = all_of([less_than(pp_bound, g_bound), less_than(opt_fid, pp_fid)])
        return self.verdict("per-pixel-bound-not-samples", status,
                            f"bound: per-pixel {fmt_estimate(pp_bound)} vs Gaussian "
                            f"{fmt_estimate(g_bound)} nats/image; FID: per-pixel "
                            f"{fmt_estimate(pp_fid)} vs optimal sigma {fmt_estimate(opt_fid)}")

    def _mixture_best(self, results: Results) -> Verdict:
        mix = results.estimate("logistic_mixture", headline_bound)
        parts, comparisons = [], []
        for row in ("categorical", "bitwise_categorical"):
            est = results.estimate(row, headline_bound)
            comparisons.append(less_than(mix, est))
            parts.append(f"{row} {fmt_estimate(est)}")
        return self.verdict("mixture-best-discrete", all_of(comparisons),
                            f"logistic mixture {fmt_estimate(mix)} nats/image vs "
                            + "; ".join(parts))

    def _pair(self, claim_id: str, results: Results, better: HeadRow, than: HeadRow,
              value: Callable[[RunResult], float | None], metric: str, unit: str,
              table_no: int, dataset: str | None) -> Verdict:
        """Whether ``better``'s ``value`` (lower is better) is below ``than``'s beyond 2 SE,
        with what the paper prints for the two on this data set's column beside it."""
        mine, theirs = results.estimate(better.row, value), results.estimate(than.row, value)
        paper = (f"; the paper, Table {table_no} ({dataset}): "
                 f"{paper_cell(table_no, better.row, dataset, metric)} vs "
                 f"{paper_cell(table_no, than.row, dataset, metric)}") if dataset else ""
        return self.verdict(claim_id, all_of([less_than(mine, theirs)]),
                            f"{better.label} {fmt_estimate(mine)}{unit} vs {than.label} "
                            f"{fmt_estimate(theirs)}" + paper)


def _draws_aside(results: Results, others: list[HeadRow]) -> str:
    """The same comparison on the FID of draws from p(x|z), shown beside the verdict (which
    is on the decoder means): the Gaussian VAE's and the highest of the others measured."""
    gauss = results.estimate("gaussian", fid_draws)
    measured = [(head.label, est) for head in others
                if (est := results.estimate(head.row, fid_draws)) is not None]
    if gauss is None or not measured:
        return ""
    label, worst = max(measured, key=lambda pair: pair[1].mean)
    return (f"; on draws from p(x|z) instead of means (shown, not the rule): the Gaussian VAE "
            f"{fmt_estimate(gauss)}, the highest of the others {label} {fmt_estimate(worst)} "
            f"({len(measured)} of {len(others)} rows measured)")


__all__ = [
    "Decoders",
]
