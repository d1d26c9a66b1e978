"""``mi-vs-beta`` (Figure 4): mutual information and marginal KL against beta, with the sigma-VAEs
at their effective beta."""

from __future__ import annotations

import itertools

from . import figures
from .framework import Context, Results, Section, Verdict, csv_rows, register_experiment
from .heads import LEARNED, OPTIMAL, SWEEP_BETAS, beta_row
from .measures import effective_beta, marginal_kl_bounds, mi_saturated, mutual_info_bounds
from .stats import (
    INCONCLUSIVE,
    NOT_RUN,
    Bounds,
    Estimate,
    all_of,
    bounds_below,
    combine,
    fmt_bounds,
    fmt_estimate,
)
from .sweep import SweepExperiment


@register_experiment("mi-vs-beta", "Figure 4: mutual information and marginal KL against beta, "
                      "with the sigma-VAE at its effective beta")
class MutualInfoVsBeta(SweepExperiment):
    title = "Mutual information and marginal KL against beta"
    paper = "Figure 4"

    def analyse(self, ctx: Context, results: Results) -> Section:
        table = []
        ceiling = None
        for head in [beta_row(b) for b in SWEEP_BETAS] + [LEARNED, OPTIMAL]:
            runs = results.runs(head.row)
            for run in runs:
                ceiling = run.metric("mi").get("mutual_info_ceiling_log_n_nats", ceiling)
            table.append({
                "decoder": head.label,
                "beta (effective for sigma-VAEs)": fmt_estimate(
                    results.estimate(head.row, effective_beta)),
                "I_e(x;z) (nats)": fmt_bounds(results.bounds(head.row, mutual_info_bounds)),
                "D_KL(m(z)||p(z)) (nats)": fmt_bounds(results.bounds(head.row,
                                                                     marginal_kl_bounds)),
                "in-sample I_e at its ceiling log N": (
                    "yes" if runs and any(map(mi_saturated, runs)) else "no"),
            })
        figs = []
        path = figures.mi_plot(results, ctx.out / "mi-vs-beta.png")
        if path:
            figs.append(("I_e(x;z) and D_KL(m(z)||p(z)) against beta (log scale), 2-SE bars; "
                         "where the in-sample I_e meets its ceiling log N (dotted line) the "
                         "leave-one-out estimate bounds it from above (open markers)", path))
        notes = ["I_e and the marginal KL are shown as [lower, upper] where the two estimators "
                 "differ: the in-sample estimate of I_e is at most log N"
                 + (f" = {ceiling:.2f} nats" if ceiling else "") + " (a lower bound in "
                 "expectation), the leave-one-out estimate an upper bound (Poole et al., 2019); "
                 "the marginal KL is the rate minus I_e (eq. 6), so it is bracketed the other "
                 "way round. A single number means both agree."]
        return Section(table, csv_rows(results), figs,
                       [self._mi_rises(results), self._kl_steep(results)], notes=notes)

    def _mi_rises(self, results: Results) -> Verdict:
        comparisons, parts = [], []
        for low, high in itertools.pairwise(SWEEP_BETAS):
            a = results.bounds(beta_row(high).row, mutual_info_bounds)
            b = results.bounds(beta_row(low).row, mutual_info_bounds)
            comparisons.append(bounds_below(a, b))
            parts.append(f"beta {low:g}: {fmt_bounds(b)}")
        top = results.bounds(beta_row(SWEEP_BETAS[-1]).row, mutual_info_bounds)
        parts.append(f"beta {SWEEP_BETAS[-1]:g}: {fmt_bounds(top)}")
        return self.verdict("mi-rises-as-beta-falls", all_of(comparisons),
                            "I_e(x;z) nats: " + "; ".join(parts))

    def _kl_steep(self, results: Results) -> Verdict:
        eff = results.estimate(OPTIMAL.row, effective_beta)
        if eff is None:
            return self.verdict("marginal-kl-steep-below", NOT_RUN, "no optimal-sigma run")
        below = [b for b in SWEEP_BETAS if b < eff.mean]
        above = [b for b in SWEEP_BETAS if b > eff.mean]
        if not below or len(above) < 2:
            return self.verdict("marginal-kl-steep-below", INCONCLUSIVE,
                                f"effective beta {eff.mean:.3g} leaves too few sweep betas "
                                "on one side")
        kl = {b: results.bounds(beta_row(b).row, marginal_kl_bounds) for b in SWEEP_BETAS}
        b0, b1, b2 = below[-1], above[0], above[1]
        rise_below = combine([(1.0, kl[b0]), (-1.0, kl[b1])])  # crossing it downwards
        rise_above = combine([(1.0, kl[b1]), (-1.0, kl[b2])])  # the decade above it
        # (kl0 - kl1) - (kl1 - kl2): kl1 is in both rises, so its error counts twice
        excess = combine([(1.0, kl[b0]), (-2.0, kl[b1]), (1.0, kl[b2])])
        zero = Bounds.point(Estimate(0.0, 0.0, 1))
        statuses = [bounds_below(zero, excess), bounds_below(kl[b1], kl[b0])]
        return self.verdict("marginal-kl-steep-below", all_of(statuses),
                            f"effective beta {eff.mean:.3g}; marginal KL nats: beta {b0:g} "
                            f"{fmt_bounds(kl[b0])}, {b1:g} {fmt_bounds(kl[b1])}, {b2:g} "
                            f"{fmt_bounds(kl[b2])}; rise across it {fmt_bounds(rise_below)}"
                            f" vs the decade above {fmt_bounds(rise_above)}; the excess "
                            f"{fmt_bounds(excess)} (its SE counts beta {b1:g} twice)")


__all__ = [
    "MutualInfoVsBeta",
]
