"""The beta sweep's runs, shared by the experiments built on them (Table 1, Figures 4 and 9) and
the decoders' beta-VAE row (the sweep's best beta)."""

from __future__ import annotations

from .framework import Context, Experiment, Results
from .heads import LEARNED, OPTIMAL, PAPER_BEST_BETA, SWEEP_BETAS, beta_row
from .measures import headline_bound
from .runs import RunSpec


def sweep_specs(ctx: Context) -> list[RunSpec]:
    rows = [beta_row(b) for b in SWEEP_BETAS] + [LEARNED, OPTIMAL]
    return [ctx.spec("svhn", row, seed) for row in rows for seed in ctx.seeds()]


class SweepExperiment(Experiment):
    """An experiment over the beta-sweep's runs (Table 1, Figures 4 and 9 share them)."""

    def runs(self, ctx: Context) -> list[RunSpec]:
        return sweep_specs(ctx)


def best_beta(ctx: Context) -> tuple[float, str]:
    """The sweep's best beta by the test bound, if the sweep has run; else the paper's."""
    results = Results(ctx.store, sweep_specs(ctx))
    means = {}
    for beta in SWEEP_BETAS:
        est = results.estimate(beta_row(beta).row, headline_bound)
        if est is not None and est.n == ctx.preset.seeds:
            means[beta] = est.mean
    if len(means) == len(SWEEP_BETAS):
        beta = min(means, key=lambda b: means[b])
        return beta, f"the beta-sweep's best beta by the test bound ({beta:g})"
    return PAPER_BEST_BETA, (f"beta = {PAPER_BEST_BETA:g}, the paper's best (run beta-sweep "
                             "first to use the best of this data)")


__all__ = [
    "SweepExperiment",
    "best_beta",
    "sweep_specs",
]
