"""``variance-convergence`` (Figure 9): how fast the decoder variance converges: sigma over
training steps for the learned and optimal sigma-VAEs and the constant sigma of the beta-VAEs."""

from __future__ import annotations

import math

from . import figures
from .framework import Context, Results, Section, csv_rows, register_experiment
from .heads import LEARNED, OPTIMAL, SWEEP_BETAS, beta_row
from .measures import headline_bound
from .runs import RunResult
from .stats import all_of, bounds_below, estimate, fmt_bounds, fmt_estimate
from .sweep import SweepExperiment


def steps_to_reach(run: RunResult, target: float,
                   tolerance: float = 0.1) -> tuple[float | None, float | None]:
    """The first logged step after which sigma stays within ``tolerance`` (relative) of
    ``target``, as ``(step, step)``; ``(last step + 1, None)`` if it never gets there (censored:
    at least that many steps); ``(None, None)`` without sigma."""
    points = [(int(r["step"]), float(r["sigma"])) for r in run.steps()
              if r.get("sigma") not in (None, "", "n/a")]
    if not points:
        return None, None
    reached = None
    for step, sigma in reversed(points):
        if abs(math.log(sigma / target)) > math.log1p(tolerance):
            break
        reached = step
    if reached is None:
        return float(points[-1][0] + 1), None
    return float(reached), float(reached)


@register_experiment("variance-convergence", "Figure 9: sigma over training steps for learned "
                      "and optimal sigma and the constant sigma of beta-VAEs, and the ELBO")
class VarianceConvergence(SweepExperiment):
    title = "How fast the decoder variance converges"
    paper = "Figure 9"

    def analyse(self, ctx: Context, results: Results) -> Section:
        # the variance the data supports: where optimal sigma (the MLE given the decoder's
        # reconstructions) ends; "reaching its variance" = getting within 10% of it for good
        target = estimate(_final_sigma(r) for r in results.runs(OPTIMAL.row))

        def reach(run: RunResult) -> tuple[float | None, float | None]:
            return (None, None) if target is None else steps_to_reach(run, target.mean)

        table = []
        for head in (LEARNED, OPTIMAL, *[beta_row(b) for b in SWEEP_BETAS]):
            final_sigma = estimate(_final_sigma(r) for r in results.runs(head.row))
            table.append({
                "decoder": head.label,
                "final sigma (of x/255)": fmt_estimate(final_sigma),
                "steps until sigma stays within 10% of the optimal sigma's final value":
                    fmt_bounds(results.bounds(head.row, reach))
                if head in (LEARNED, OPTIMAL) else "constant",
                "test -ELBO (nats/image)": fmt_estimate(results.estimate(head.row,
                                                                         headline_bound)),
            })
        figs = []
        path = figures.variance_plot(results, ctx.out / "variance-convergence.png")
        if path:
            figs.append(("Decoder sigma and the training -ELBO against training steps", path))
        learned = results.bounds(LEARNED.row, reach)
        optimal = results.bounds(OPTIMAL.row, reach)
        censored = [h.label for h, b in ((LEARNED, learned), (OPTIMAL, optimal))
                    if b is not None and b.high is None]
        verdict = self.verdict("optimal-converges-faster", all_of([bounds_below(optimal,
                                                                                learned)]),
                               f"target sigma {fmt_estimate(target)} (optimal sigma's final "
                               f"value); steps until sigma stays within 10% of it: optimal "
                               f"{fmt_bounds(optimal)}, learned {fmt_bounds(learned)}"
                               + (f" ({', '.join(censored)}: not within 10% by the end of "
                                  "some run, so a lower bound, '>=')" if censored else ""))
        return Section(table, csv_rows(results), figs, [verdict])


def _final_sigma(run: RunResult) -> float | None:
    return run.metric("elbo").get("sigma")


__all__ = [
    "VarianceConvergence",
    "steps_to_reach",
]
