"""The paper's experiments: which runs each needs and what it concludes from them.

Each experiment is registered by name (``sigmavae experiment NAME``) with a decorator. Its
``runs(ctx)`` lists ordinary training runs (shared between experiments where the configs are
equal); its ``analyse(ctx, results)`` turns their numbers into a table beside the published one,
figures and a verdict per claim (see :mod:`.claims`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..registry import Registry
from . import claims, figures
from .heads import (
    DECODER_ROWS,
    DISCRETIZED_ROWS,
    HEAVY_HEADS,
    LEARNED,
    OPTIMAL,
    PAPER_BEST_BETA,
    SWEEP_BETAS,
    HeadRow,
    beta_row,
    is_continuous,
)
from .presets import DataChoice, Preset
from .published import published
from .runs import RunResult, RunSpec, RunStore, read_seconds
from .stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    Bounds,
    Estimate,
    all_of,
    bounds_below,
    combine,
    estimate,
    estimate_bounds,
    fmt_bounds,
    fmt_estimate,
    fmt_number,
    less_than,
)


@dataclass
class Context:
    """What an experiment runs on: preset, data per role, the run store and its own folder."""

    preset: Preset
    data: dict[str, DataChoice]  # role ("svhn", "cifar") -> data
    store: RunStore
    out: Path  # the experiment's report folder
    fid_features: dict[str, str] = field(default_factory=dict)  # data key -> feature note
    requested_seeds: int | None = None  # --seeds, if given (else each experiment's default)

    def spec(self, role: str, head: HeadRow, seed: int, model: str = "conv") -> RunSpec:
        train = {**self.preset.train_keys(), **self.data[role].train_keys(), "model": model,
                 **head.train_keys()}
        return RunSpec(head.row, head.label, train, seed)

    def seeds(self, head: HeadRow | None = None) -> range:
        """The seeds of a configuration: the preset's, fewer for a heavy head where the preset
        says so (unless --seeds was given)."""
        heavy = self.preset.heavy_head_seeds
        if (head is not None and head.likelihood in HEAVY_HEADS and heavy is not None
                and self.requested_seeds is None):
            return range(min(heavy, self.preset.seeds))
        return range(self.preset.seeds)


@dataclass
class Verdict:
    """One claim's verdict with the numbers behind it."""

    claim: claims.Claim
    status: str
    evidence: str
    budget: str = ""  # how the runs behind it compare with the paper's (steps, data, FID)


@dataclass
class Section:
    """What an experiment's analysis produced (written into its report by :mod:`.report`)."""

    table: list[dict[str, str]]  # rows of the measured-beside-published table
    rows: list[dict[str, Any]]  # one per run: the CSV
    figures: list[tuple[str, Path]]  # (caption, PNG)
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)


class Results:
    """The evaluated runs of an experiment, looked up by row."""

    def __init__(self, store: RunStore, specs: Iterable[RunSpec]) -> None:
        self.by_row: dict[str, list[RunResult]] = {}
        self.missing: list[RunSpec] = []
        for spec in specs:
            result = store.result(spec)
            if result is None:
                self.missing.append(spec)
            else:
                self.by_row.setdefault(spec.row, []).append(result)

    def runs(self, row: str) -> list[RunResult]:
        return self.by_row.get(row, [])

    def estimate(self, row: str, value: Callable[[RunResult], float | None]) -> Estimate | None:
        """Mean ± SE over the row's seeds; a row of one seed, where ``value`` has a standard
        error over the test images (:data:`TEST_STDERR`), gets that one (which leaves out the
        seed-to-seed spread; the tables say "SE over test images")."""
        runs = self.runs(row)
        stderr = TEST_STDERR.get(value)
        if len(runs) == 1 and stderr is not None:
            return seed_or_test_estimate(runs, value, stderr)
        return estimate(value(r) for r in runs)

    def bounds(self, row: str, value: Callable[[RunResult], tuple[float | None, float | None]]
               ) -> Bounds | None:
        """Bounds over seeds of a per-run ``(low, high)`` (see :func:`.stats.estimate_bounds`)."""
        return estimate_bounds(value(r) for r in self.runs(row))


# -- what one run measured ---------------------------------------------------------------------
def continuous_bound(run: RunResult) -> float | None:
    """The test -ELBO (nats/image) of the head's own density/mass, None if not a bound."""
    elbo = run.metric("elbo")
    if not elbo.get("available") or not elbo.get("bound_valid"):
        return None
    return elbo["single_sample"]["neg_elbo_nats_per_image"]


def discrete_bound(run: RunResult) -> float | None:
    """The -ELBO of the 8-bit data (nats/image): a discrete head's own, a continuous head's
    density integrated over each intensity bin; None if not a bound."""
    disc = run.metric("discretized")
    if not disc.get("available"):
        return None
    return disc.get("neg_elbo_nats_per_image")


def continuous_bound_se(run: RunResult) -> float | None:
    """The standard error over the test images of :func:`continuous_bound`."""
    if continuous_bound(run) is None:
        return None
    return run.metric("elbo")["single_sample"].get("neg_elbo_stderr_nats_per_image")


def discrete_bound_se(run: RunResult) -> float | None:
    """The standard error over the test images of :func:`discrete_bound`."""
    if discrete_bound(run) is None:
        return None
    return run.metric("discretized").get("neg_elbo_stderr_nats_per_image")


def seed_or_test_estimate(runs: list[RunResult], value: Callable[[RunResult], float | None],
                          stderr: Callable[[RunResult], float | None]) -> Estimate | None:
    """Mean ± SE over seeds; with one seed, the run's value ± its SE over the test examples
    (``stderr``), which leaves out the seed-to-seed spread."""
    if len(runs) == 1:
        mean, se = value(runs[0]), stderr(runs[0])
        return None if mean is None else Estimate(float(mean), se, 1)
    return estimate(value(r) for r in runs)


def headline_bound(run: RunResult) -> float | None:
    """Tables 1-3's -log p: continuous heads their density bound, discrete heads the discrete
    bound (the ELBO of a discrete head is already on the 8-bit data)."""
    return continuous_bound(run)


#: the test-image standard error of each per-run value that has one (see Results.estimate)
TEST_STDERR: dict[Callable[[RunResult], float | None], Callable[[RunResult], float | None]] = {
    continuous_bound: continuous_bound_se, headline_bound: continuous_bound_se,
    discrete_bound: discrete_bound_se}


def fid(run: RunResult) -> float | None:
    value = run.metric("fid")
    return value.get("fid") if value.get("available") else None


def effective_beta(run: RunResult) -> float | None:
    return run.metric("elbo").get("effective_beta")


def mutual_info(run: RunResult) -> float | None:
    mi = run.metric("mi")
    return mi.get("mutual_info_nats") if mi.get("available") else None


def marginal_kl(run: RunResult) -> float | None:
    mi = run.metric("mi")
    return mi.get("marginal_kl_nats") if mi.get("available") else None


def mi_saturated(run: RunResult) -> bool:
    return bool(run.metric("mi").get("saturated"))


def mutual_info_bounds(run: RunResult) -> tuple[float | None, float | None]:
    """``I_e`` between the in-sample estimate (capped at ``log N``; a lower bound in
    expectation) and the smaller of the leave-one-out estimate (an upper bound in expectation)
    and the rate (``I_e = rate - D_KL(m || p) <= rate``). A record without the leave-one-out
    estimate is open above where the in-sample one is at its ceiling, a measurement elsewhere."""
    mi = run.metric("mi")
    low = mutual_info(run)
    if low is None:
        return None, None
    upper, rate = mi.get("mutual_info_upper_nats"), mi.get("rate_kl_nats")
    if upper is None:
        return low, None if mi_saturated(run) else low
    return low, min(upper, rate) if rate is not None else upper


def marginal_kl_bounds(run: RunResult) -> tuple[float | None, float | None]:
    """``D_KL(m || p) = rate - I_e``: between ``max(0, rate - I_upper)`` (a KL is never
    negative) and ``rate - I_lower``."""
    mi = run.metric("mi")
    high = marginal_kl(run)
    if high is None:
        return None, None
    rate, (_, upper) = mi.get("rate_kl_nats"), mutual_info_bounds(run)
    if upper is None or rate is None:
        return None, high
    if upper == mutual_info(run):  # the two estimates agree: a measurement
        return high, high
    return max(0.0, rate - upper), high


def invalid_reason(run: RunResult) -> str | None:
    elbo = run.metric("elbo")
    return None if elbo.get("bound_valid") else (elbo.get("reason") or "not a valid bound")


def run_row(run: RunResult) -> dict[str, Any]:
    """The CSV row of one run (units in the column names)."""
    return {
        "row": run.spec.row, "label": run.spec.label, "seed": run.spec.seed,
        "run_id": run.spec.run_id, "likelihood": run.spec.train.get("likelihood"),
        "likelihood_options": run.spec.train.get("likelihood_options"),
        "data": run.spec.train.get("data"), "data_options": run.spec.train.get("data_options"),
        "neg_elbo_nats_per_image": continuous_bound(run),
        "neg_elbo_8bit_nats_per_image": discrete_bound(run),
        "bound_note": invalid_reason(run),
        "fid": fid(run), "effective_beta": effective_beta(run),
        "mutual_info_nats": mutual_info(run), "marginal_kl_nats": marginal_kl(run),
        "mi_saturated": mi_saturated(run) if run.metric("mi").get("available") else None,
        "train_steps": run.final.get("step"),
        **{f"{name}_seconds": read_seconds(run.folder / f"{name}_seconds.txt")
           for name in ("wall", "train", "eval")},
        # the trainer's own clock: training and validation of every epoch, across restarts
        "epochs_seconds": sum(float(e.get("seconds") or 0) + float(e.get("val_seconds") or 0)
                              for e in run.epochs()) or None,
        "trained_on": run.final.get("ran_on", {}).get("device"),
        "precision": run.final.get("ran_on", {}).get("precision"),
        **{f"eval_{name}_seconds": run.metric(name).get("seconds")
           for name in sorted(run.evaluation.get("metrics", {}))},
    }


def _published(table: int, row: str, dataset: str | None, metric: str) -> str:
    if dataset is None:
        return "-"
    try:
        value = published(table, row, dataset, metric)
    except KeyError:
        return "-"
    return f"{'< ' if value.relation == '<' else ''}{value.value:g}"


def _paper_dataset(data: DataChoice) -> str | None:
    """The published data set to compare with: the one ``data`` stands in for, or its own."""
    name = (data.stands_in_for or data.data).lower().replace("-", "")
    return {"svhn": "svhn", "cifar10": "cifar10", "celeba": "celeba", "frey": "frey"}.get(name)


EXPERIMENTS: Registry[type[Experiment]] = Registry("experiment")


def register_experiment(name: str, summary: str) -> Callable[[type[Experiment]], type[Experiment]]:
    """Decorator: register an experiment class under ``name`` (also its ``name`` attribute)."""

    def wrap(cls: type[Experiment]) -> type[Experiment]:
        cls.name = name
        return EXPERIMENTS.register(name, summary)(cls)

    return wrap


class Experiment:
    """Base class: ``name``, ``title`` and the roles of data it trains on."""

    name: str = ""
    title: str = ""
    paper: str = ""  # which table / figure of the paper
    roles: tuple[str, ...] = ("svhn",)
    #: whether its runs' FID uses the classifier trained on each data set (image experiments)
    classifier_fid: bool = True
    #: the presets ``all`` runs it under (None: every preset)
    presets: tuple[str, ...] | None = None

    def runs(self, ctx: Context) -> list[RunSpec]:
        raise NotImplementedError

    def setup(self, ctx: Context) -> list[str] | None:
        """The report's setup lines; None: the image experiments' (conv VAE, preset sizes)."""
        return None

    def analyse(self, ctx: Context, results: Results) -> Section:
        raise NotImplementedError

    def verdict(self, claim_id: str, status: str, evidence: str) -> Verdict:
        return Verdict(claims.get(claim_id), status, evidence)


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


#: the float32 run that checks a preset trained at another precision (seed 0, optimal sigma)
FLOAT32_CHECK = HeadRow("optimal_sigma_float32", "optimal sigma-VAE, float32 (precision check)",
                        OPTIMAL.likelihood, OPTIMAL.options)


def float32_check_spec(ctx: Context) -> RunSpec | None:
    """Where the preset trains at another precision: the optimal sigma-VAE once in float32."""
    if ctx.preset.precision == "32-true":
        return None
    spec = ctx.spec("svhn", FLOAT32_CHECK, 0)
    return RunSpec(spec.row, spec.label, {**spec.train, "precision": "32-true"}, spec.seed)


def float32_check_note(ctx: Context, results: Results) -> str | None:
    """Whether the float32 run's test bound lies within the seed spread of the preset's."""
    if float32_check_spec(ctx) is None:
        return None
    check = [headline_bound(r) for r in results.runs(FLOAT32_CHECK.row)]
    seeds = [v for v in (headline_bound(r) for r in results.runs(OPTIMAL.row)) if v is not None]
    if not check or check[0] is None or len(seeds) < 2:
        return (f"Precision check (--precision {ctx.preset.precision} against float32, optimal "
                "sigma-VAE): not finished yet.")
    est = estimate(seeds)
    assert est is not None and est.stderr is not None
    low, high = min(seeds), max(seeds)
    inside = low <= check[0] <= high
    sd = est.stderr * math.sqrt(est.n)
    return (f"Precision check: the optimal sigma-VAE trained in float32 (seed 0) has test bound "
            f"{check[0]:.1f} nats/image; with --precision {ctx.preset.precision} its {est.n} "
            f"seeds give {fmt_estimate(est)} (range {low:.1f} to {high:.1f}, seed SD "
            f"{sd:.1f}): {'within' if inside else 'outside'} the seed spread"
            + ("" if inside else f" by {min(abs(check[0] - low), abs(check[0] - high)):.1f} "
               f"nats = {min(abs(check[0] - low), abs(check[0] - high)) / sd:.1f} seed SDs")
            + ".")


@register_experiment("beta-sweep", "Table 1: unit-variance beta-VAEs against the learned- and "
                      "optimal-sigma VAEs (small conv model)")
class BetaSweep(SweepExperiment):
    title = "beta-VAE sweep against calibrated decoders"
    paper = "Table 1"

    def runs(self, ctx: Context) -> list[RunSpec]:
        check = float32_check_spec(ctx)
        return sweep_specs(ctx) + ([check] if check else [])

    def analyse(self, ctx: Context, results: Results) -> Section:
        dataset = _paper_dataset(ctx.data["svhn"])
        rows = [beta_row(b) for b in SWEEP_BETAS] + [LEARNED, OPTIMAL]
        table = []
        for head in rows:
            bound = results.estimate(head.row, headline_bound)
            beta = results.estimate(head.row, effective_beta)
            pub_row = "sigma_vae" if head in (LEARNED, OPTIMAL) else head.row
            cells = {
                "decoder": head.label,
                "beta (effective for sigma-VAEs)": fmt_estimate(beta),
                "-log p bound (nats/image)": fmt_estimate(bound),
                "FID (substitute features)": fmt_estimate(results.estimate(head.row, fid)),
                "paper beta (Table 1, SVHN)": _published(1, pub_row, "svhn", "beta"),
                "paper -log p (Table 1, SVHN)": _published(1, pub_row, "svhn", "neg_log_p"),
                "paper FID (Table 1, SVHN)": _published(1, pub_row, "svhn", "fid"),
            }
            if dataset not in (None, "svhn"):  # the same rows on this data, where printed
                cells[f"paper -log p (Table 3, {dataset})"] = _published(3, head.row, dataset,
                                                                          "neg_log_p")
                cells[f"paper FID (Table 3, {dataset})"] = _published(3, head.row, dataset,
                                                                        "fid")
            table.append(cells)
        verdicts = [self._beats_sweep(results), self._near_tuned(results)]
        figs = []
        path = figures.beta_sweep_plot(results, ctx.out / "beta-sweep.png")
        if path:
            figs.append(("Test bound (symmetric log axis, each mean printed) and FID against "
                         "beta, 2-SE bars; the sigma-VAEs at their effective beta", path))
        notes = ["Which sigma-VAE each rule needs: Table 1 prints one sigma-VAE row. Its bound "
                 "(-3333) is the optimal sigma-VAE's in Table 2, so 'beats every beta' is "
                 "tested on the optimal sigma-VAE; its beta is the one the variance is "
                 "*learned* to (the caption: 'learned in sigma-VAE'; Sec. 5.1: 'learning the "
                 "variance produces similar values of beta'), so 'near the tuned beta' is "
                 "tested on the learned (shared) sigma-VAE, with the optimal one shown beside "
                 "it and not required."]
        precision = float32_check_note(ctx, results)
        if precision:
            notes.append(precision)
        if dataset not in (None, "svhn"):
            notes.append(f"Table 1 is on SVHN only; the Table 3 columns are the paper's rows "
                         f"for this data set ({dataset}, small conv model) where it prints "
                         "them (its beta-VAE row is at a tuned beta it does not print).")
        return Section(table, _csv_rows(results), figs, verdicts, notes=notes)

    def _beats_sweep(self, results: Results) -> Verdict:
        optimal = results.estimate(OPTIMAL.row, headline_bound)
        comparisons, parts = [], []
        for beta in SWEEP_BETAS:
            other = results.estimate(beta_row(beta).row, headline_bound)
            comparisons.append(less_than(optimal, other))
            parts.append(f"beta {beta:g}: {fmt_estimate(other)}")
        return self.verdict("optimal-beats-sweep", all_of(comparisons),
                            f"optimal sigma {fmt_estimate(optimal)} nats/image vs "
                            + "; ".join(parts))

    def _near_tuned(self, results: Results) -> Verdict:
        bounds = {b: results.estimate(beta_row(b).row, headline_bound) for b in SWEEP_BETAS}
        known = {b: e for b, e in bounds.items() if e is not None}
        if len(known) < len(SWEEP_BETAS):
            return self.verdict("sigma-near-tuned-beta", NOT_RUN, "the sweep is incomplete")
        best = min(known, key=lambda b: known[b].mean)
        statuses: list[bool | None] = []
        parts: list[str] = []
        for head in (LEARNED, OPTIMAL):
            values = [effective_beta(r) for r in results.runs(head.row)]
            logs = estimate(math.log10(v) for v in values if v)
            required = head is LEARNED  # see the report's note: the claim is about learning
            if logs is None or logs.stderr is None:
                if required:
                    statuses.append(None)
                parts.append(f"{head.label}: n/a")
                continue
            # "near" = within half a decade (a factor sqrt(10)) of the best grid beta: closer to
            # it than to its neighbours on the grid
            dist_low = abs(logs.mean - math.log10(best)) - 2 * logs.stderr
            dist_high = abs(logs.mean - math.log10(best)) + 2 * logs.stderr
            status = True if dist_high <= 0.5 else False if dist_low > 0.5 else None
            if required:
                statuses.append(status)
            parts.append(f"{head.label}{'' if required else ' (shown, not required)'}: "
                         f"effective beta {10 ** logs.mean:.3g} (log10 {logs.mean:.2f} ± "
                         f"{logs.stderr:.2f})")
        return self.verdict("sigma-near-tuned-beta", all_of(statuses),
                            f"best beta of the sweep by the bound: {best:g}; " + "; ".join(parts))


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
        dataset = _paper_dataset(data)
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
                "FID (substitute features)": fmt_estimate(results.estimate(head.row, fid)),
                "paper -log p": _published(table_no, head.row, dataset, "neg_log_p"),
                "paper FID": _published(table_no, head.row, dataset, "fid"),
            })
        figs = []
        grid = figures.sample_panels(ctx.store, [(h.label, results.runs(h.row)) for h in rows],
                                     ctx.out / "samples.png")
        if grid:
            figs.append(("Prior samples (decoder means, seed-0 run of each decoder), upscaled "
                         "with nearest neighbour", grid))
        pair = figures.sample_panels(
            ctx.store, [(OPTIMAL.label, results.runs(OPTIMAL.row)),
                        ("Gaussian VAE (unit variance)", results.runs("gaussian"))],
            ctx.out / "sigma-vae-vs-gaussian.png")
        if pair:
            figs.append(("The optimal sigma-VAE against the unit-variance Gaussian VAE "
                         "(the paper's Figures 2, 5, 6, 8)", pair))
        verdicts = [self._gaussian_worst(results, rows), self._per_pixel(results),
                    self._mixture_best(results)]
        return Section(table, _csv_rows(results), figs, verdicts,
                       notes=[f"The beta-VAE row uses {why}.",
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
                            f"FID of the Gaussian VAE {fmt_estimate(gauss)} vs " + "; ".join(parts))

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
        dataset = _paper_dataset(ctx.data["cifar"])
        table = []
        for head in DISCRETIZED_ROWS:
            continuous = is_continuous(head.likelihood, head.options)
            eight_bit = discrete_bound if continuous else headline_bound
            table.append({
                "decoder": head.label,
                "-log pdf of x/255 (nats/image)": (
                    fmt_estimate(results.estimate(head.row, continuous_bound))
                    if continuous else "-"),
                "-log p of 8-bit data (nats/image)": fmt_estimate(
                    results.estimate(head.row, eight_bit)),
                "FID (substitute features)": fmt_estimate(results.estimate(head.row, fid)),
                "paper -log pdf": _published(4, head.row, dataset, "neg_log_pdf"),
                "paper -log p": _published(4, head.row, dataset, "neg_log_p"),
                "paper FID": _published(4, head.row, dataset, "fid"),
            })
        return Section(table, _csv_rows(results), [], [self._close(results),
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
        return Section(table, _csv_rows(results), figs,
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
        return Section(table, _csv_rows(results), figs, [verdict])


def budget_line(claim: claims.Claim, ctx: Context, results: Results) -> str:
    """How the runs behind ``claim`` compare with the paper's: Adam steps (the fewest of any
    run), data, and FID features where the claim uses FID."""
    steps = [int(r.final["step"]) for runs in results.by_row.values() for r in runs
             if r.final.get("step") is not None]
    if not steps:
        return "no finished runs"
    fewest = min(steps)
    if fewest >= 0.95 * claim.paper_steps:
        length = f"{fewest:,} Adam steps per run, the paper's length ({claim.paper_steps:,})"
    else:
        length = (f"{fewest:,} Adam steps per run: {claim.paper_steps / fewest:.0f}x fewer than "
                  f"the paper's {claim.paper_steps:,} (**reduced budget**)")
    data = "; ".join(sorted({d.label for d in ctx.data.values()}))
    parts = [length, f"data: {data} (paper: {claim.paper_data})"]
    if results.missing:
        finished = len(steps)
        parts.insert(0, f"**partial: {finished} of {finished + len(results.missing)} runs "
                        "finished**")
    if claim.uses_fid:
        parts.append("FID on substitute features, not Inception (accuracy in the setup)"
                     if any(f.startswith("classifier") for f in ctx.fid_features.values())
                     else "FID features: " + "; ".join(ctx.fid_features.values()))
    return "; ".join(parts)


def _final_sigma(run: RunResult) -> float | None:
    return run.metric("elbo").get("sigma")


def _csv_rows(results: Results) -> list[dict[str, Any]]:
    return [run_row(r) for runs in results.by_row.values() for r in runs]


__all__ = [
    "EXPERIMENTS",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "Context",
    "Experiment",
    "Results",
    "Section",
    "Verdict",
    "budget_line",
    "fmt_number",
]
