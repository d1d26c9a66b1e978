"""The beta sweep's runs, shared by the experiments built on them (Table 1, Figures 4 and 9) and
the decoders' beta-VAE row (the sweep's best beta)."""

from __future__ import annotations

from .framework import Context, Experiment, Results
from .heads import LEARNED, OPTIMAL, PAPER_BEST_BETA, SWEEP_BETAS, beta_row
from .measures import headline_bound
from .runs import RunSpec


def sweep_specs(ctx: Context, refined: bool = False) -> list[RunSpec]:
    """The sweep's runs: the paper's decade grid of betas (Figures 4 and 9) or, ``refined``,
    Table 1's grid with the preset's ``refine_betas``; then the learned and optimal sigma-VAEs."""
    betas = ctx.preset.table1_betas() if refined else SWEEP_BETAS
    rows = [beta_row(b) for b in betas] + [LEARNED, OPTIMAL]
    return [ctx.spec("svhn", row, seed) for row in rows for seed in ctx.seeds()]


class SweepExperiment(Experiment):
    """An experiment over the beta-sweep's runs (Table 1, Figures 4 and 9 share them)."""

    def runs(self, ctx: Context) -> list[RunSpec]:
        return sweep_specs(ctx)


def table1_betas_in(ctx: Context, results: Results) -> tuple[tuple[float, ...], dict[float, int]]:
    """The betas Table 1's verdicts use now, and the pending ones (``beta -> seeds finished``):
    the paper's decades always; a beta the preset adds once all its seeds are in."""
    seeds = len(ctx.seeds())
    done = {b: len(results.runs(beta_row(b).row)) for b in ctx.preset.table1_betas()}
    pending = {b: n for b, n in done.items() if b not in SWEEP_BETAS and n < seeds}
    return tuple(b for b in done if b not in pending), pending


def best_beta(ctx: Context) -> tuple[float, str]:
    """The best beta of Table 1's sweep by the test bound (:func:`table1_betas_in`), if the
    sweep has run; else the paper's."""
    results = Results(ctx.store, sweep_specs(ctx, refined=True))
    betas, _ = table1_betas_in(ctx, results)
    means = {}
    for beta in betas:
        est = results.estimate(beta_row(beta).row, headline_bound)
        if est is not None and est.n == ctx.preset.seeds:
            means[beta] = est.mean
    if len(means) == len(betas):
        beta = min(means, key=lambda b: means[b])
        return beta, f"the beta-sweep's best beta by the test bound ({beta:g})"
    return PAPER_BEST_BETA, (f"beta = {PAPER_BEST_BETA:g}, the paper's best (run beta-sweep "
                             "first to use the best of this data)")


__all__ = [
    "SweepExperiment",
    "best_beta",
    "sweep_specs",
    "table1_betas_in",
]
