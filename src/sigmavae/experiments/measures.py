"""What one run measured, read from its evaluation: the per-run values that experiments tabulate
and figures plot (each a function of a :class:`~.runs.RunResult`, None where not measured)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .runs import RunResult, read_seconds
from .stats import Estimate, estimate


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
                          stderr: Callable[[RunResult], float | None],
                          over: str = "test images") -> Estimate | None:
    """Mean ± SE over seeds; with one seed, the run's value ± its SE over the test examples
    (``stderr``, which is over ``over``), which leaves out the seed-to-seed spread."""
    if len(runs) == 1:
        mean, se = value(runs[0]), stderr(runs[0])
        return None if mean is None else Estimate(float(mean), se, 1, over)
    return estimate(value(r) for r in runs)


def headline_bound(run: RunResult) -> float | None:
    """Tables 1-3's -log p: continuous heads their density bound, discrete heads the discrete
    bound (the ELBO of a discrete head is already on the 8-bit data)."""
    return continuous_bound(run)


def fid(run: RunResult) -> float | None:
    """The run's FID, None where not measured or measured on another feature extractor than
    its report's (:attr:`RunResult.fid_left_out`: not comparable)."""
    return None if run.fid_left_out else measured_fid(run)


def fid_se(run: RunResult) -> float | None:
    """The bootstrap standard error of :func:`fid` over the prior samples and test images
    (evaluations from before it was measured have none)."""
    if fid(run) is None:
        return None
    return run.metric("fid").get("fid_bootstrap_stderr")


def fid_draws(run: RunResult) -> float | None:
    """The FID of draws from ``p(x|z)`` at the prior samples (``fid_draws``), None where not
    measured (a record evaluated before it, a head with no draw at a prior sample) or where
    the run's FID is on another extractor than its report's (both use the same features)."""
    value = run.metric("fid_draws")
    return value.get("fid") if value.get("available") and not run.fid_left_out else None


def fid_draws_se(run: RunResult) -> float | None:
    """The bootstrap standard error of :func:`fid_draws`."""
    return None if fid_draws(run) is None else run.metric("fid_draws").get(
        "fid_bootstrap_stderr")


class OneSeedError(NamedTuple):
    """A per-run value's standard error within one run, and what it is over.

    ``floors_mean``: the error is each run's own sampling (an FID of the run's own prior
    samples), so it is a floor for the error of a mean over seeds however close two or three
    seeds happen to fall (:func:`.stats.with_sampling_floor`); not so for a bound's error over
    the test images, the same images for every run, shared by every comparison."""

    stderr: Callable[[RunResult], float | None]
    over: str
    floors_mean: bool = False


#: the within-run standard error of each per-run value that has one (see Results.estimate):
#: a row of one seed is compared with it, which leaves out the seed-to-seed spread
TEST_STDERR: dict[Callable[[RunResult], float | None], OneSeedError] = {
    continuous_bound: OneSeedError(continuous_bound_se, "test images"),
    headline_bound: OneSeedError(continuous_bound_se, "test images"),
    discrete_bound: OneSeedError(discrete_bound_se, "test images"),
    fid: OneSeedError(fid_se, "samples and test images, bootstrap", floors_mean=True),
    fid_draws: OneSeedError(fid_draws_se, "samples and test images, bootstrap",
                            floors_mean=True)}


def measured_fid(run: RunResult) -> float | None:
    """The FID the run's evaluation measured, on whatever features (:func:`fid_features`)."""
    value = run.metric("fid")
    return value.get("fid") if value.get("available") else None


def fid_features(run: RunResult) -> str | None:
    """The features the run's FID was computed on, as its evaluation described them."""
    value = run.metric("fid")
    return str(value["features"]) if value.get("available") and value.get("features") else None


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


def cost_columns(run: RunResult) -> dict[str, Any]:
    """What a run cost and where: its wall, training and evaluation seconds (the files the
    experiment runner writes; ``None`` where absent) and the device and precision it trained
    on (``final.json``'s ``ran_on``, e.g. ``"AMD EPYC, 1 threads"``, ``"bf16-mixed"``)."""
    ran_on = run.final.get("ran_on", {})
    return {**{f"{name}_seconds": read_seconds(run.folder / f"{name}_seconds.txt")
               for name in ("wall", "train", "eval")},
            "trained_on": ran_on.get("device"), "precision": ran_on.get("precision")}


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
        "fid": measured_fid(run), "fid_in_report": (None if measured_fid(run) is None
                                                    else run.fid_left_out is None),
        # on the same features as fid (fid_in_report says for both)
        "fid_draws": (run.metric("fid_draws").get("fid")
                      if run.metric("fid_draws").get("available") else None),
        "effective_beta": effective_beta(run),
        "mutual_info_nats": mutual_info(run), "marginal_kl_nats": marginal_kl(run),
        "mi_saturated": mi_saturated(run) if run.metric("mi").get("available") else None,
        "train_steps": run.final.get("step"),
        **cost_columns(run),
        # the trainer's own clock: training and validation of every epoch, across restarts
        "epochs_seconds": sum(float(e.get("seconds") or 0) + float(e.get("val_seconds") or 0)
                              for e in run.epochs()) or None,
        **{f"eval_{name}_seconds": run.metric(name).get("seconds")
           for name in sorted(run.evaluation.get("metrics", {}))},
    }


__all__ = [
    "TEST_STDERR",
    "OneSeedError",
    "continuous_bound",
    "continuous_bound_se",
    "cost_columns",
    "discrete_bound",
    "discrete_bound_se",
    "effective_beta",
    "fid",
    "fid_draws",
    "fid_draws_se",
    "fid_features",
    "fid_se",
    "headline_bound",
    "invalid_reason",
    "marginal_kl",
    "marginal_kl_bounds",
    "measured_fid",
    "mi_saturated",
    "mutual_info",
    "mutual_info_bounds",
    "run_row",
    "seed_or_test_estimate",
]
