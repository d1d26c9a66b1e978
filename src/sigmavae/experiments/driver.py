"""Run, plan, prepare or collect experiments: ``sigmavae experiment NAME`` is
:func:`run_experiments`.

>>> run_experiments(["beta-sweep"], preset="quick", out="docs/results", runs_dir="runs/experiments")

A plan (:mod:`.plan`) is written without data; the data and FID features it needs are made by
its own first step, ``--prepare``, on the machine that runs it.

Experiments run in the order of :data:`ORDER` (the beta-sweep first: the decoders experiment
uses its best beta), each training only the runs that are not evaluated yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .features import fid_classifier, keep_classifiers, planned_features
from .framework import EXPERIMENTS, Context, Experiment, Results, Section, budget_line
from .plan import CACHE, Plan, PlannedRun, write_plan
from .presets import (
    PRESETS,
    DataChoice,
    ExperimentError,
    Preset,
    default_data,
    user_data,
    with_seeds,
)
from .progress import describe_progress, finished_times
from .reevaluate import check_metric_names, reevaluate_runs
from .report import write_index, write_report
from .runs import EvalSettings, Evaluation, RunSpec, RunStore, seeds_first, unique_runs
from .stats import NOT_RUN

#: ``all`` runs the experiments in this order (each under the presets it is made for).
ORDER = ("beta-sweep", "mi-vs-beta", "variance-convergence", "decoders", "discretized", "video",
         "bair")


@dataclass
class Outcome:
    """What :func:`run_experiments` wrote: each experiment's report, the index, the plan."""

    reports: dict[str, Path]
    sections: dict[str, Section]
    index: Path | None = None
    plan: Plan | None = None


def experiment_names(name: str) -> list[str]:
    if name == "all":
        return list(ORDER)
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; choose one of: "
                              f"{', '.join([*EXPERIMENTS.names(), 'all'])}")
    return [name]


def _data_for(preset: Preset, roles: Sequence[str], data: str | None, data_root: str | None,
              data_options: dict[str, Any], prepare: bool = True) -> dict[str, DataChoice]:
    if data is not None:  # the user's data for every role
        choice = user_data(data, data_root, data_options)
        return dict.fromkeys(roles, choice)
    if data_root is not None or data_options:
        raise ExperimentError("--data-root and --data-option need --data (the data set they "
                              "belong to)")
    return {role: default_data(preset, role, prepare) for role in roles}


def run_experiments(
    names: Sequence[str] | str, *, preset: str | Preset = "quick",
    out: str | Path | None = None, runs_dir: str | Path | None = None, seeds: int | None = None,
    data: str | None = None, data_root: str | None = None,
    data_options: dict[str, Any] | None = None, jobs: int = 1, threads: int | None = None,
    plan: bool = False,
    collect: bool = False, prepare: bool = False, command: str | None = None,
    records: str | Path | None = None, only: Sequence[str] | None = None,
    status: bool = False, reevaluate: Sequence[str] | None = None,
    log: Callable[[str], None] = lambda m: print(m, flush=True),
) -> Outcome:
    """Run (or ``plan``, ``prepare`` or ``collect``) the experiments ``names`` and write their
    reports.

    Args:
        names: experiment names, or ``"all"``.
        preset: ``"quick"``, ``"paper-length"``, ``"paper"`` or a :class:`Preset`.
        out: folder of the reports (one sub-folder per experiment; ``all`` adds README.md;
            default ``docs/results``); with ``plan``, the plan's folder (default
            ``plans/NAME-PRESET``).
        runs_dir: folder of the runs (shared by all experiments; finished runs are reused;
            default ``runs/experiments``). A plan keeps its runs in ``out/runs``.
        seeds: seeds per configuration (default: the preset's).
        data, data_root, data_options: run on this registered data set instead of the preset's.
        jobs: runs at once on this machine (with ``plan``: run-local.sh's default).
        threads: torch threads per run (default: the machine's cores divided by ``jobs``).
        plan: only write the plan folder (:mod:`.plan`): every run's config, one command line
            per run, the scripts (SLURM array, local loop). Reads no data, trains nothing.
        prepare: only make what the runs and evaluations read: extract the preset's shipped
            data into the cache and train the FID feature classifiers (a plan's first step).
        collect: only build the reports from the runs that have finished.
        command: the command line printed in the reports.
        records: copy each evaluated run's small files (configs, metrics, step logs, sample
            grid; no checkpoints) into ``records/<run id>/`` after its report is written, so
            that ``collect`` with ``runs_dir=records`` rebuilds the reports from them alone.
        status: only say where the runs stand (:mod:`.progress`): each run's state, the epochs
            a started one has done, the training time left; reads no data, writes nothing.
        only: train (or plan) only the runs of these table rows (the ``row`` column of
            ``runs.csv``, e.g. ``["gaussian", "optimal_sigma"]``); the reports are still
            written from every finished run, the others counted as not finished.
        reevaluate: only evaluate these metrics (e.g. ``["fid"]``) of the evaluated runs
            again from their checkpoints, merged into their ``eval.json``
            (:mod:`.reevaluate`; with ``only``, of those rows' runs), then write the reports.
    """
    modes = [flag for flag, on in (("--plan", plan), ("--prepare", prepare),
                                   ("--collect", collect), ("--status", status),
                                   ("--reevaluate", reevaluate is not None)) if on]
    if len(modes) > 1:
        raise ExperimentError(f"{' and '.join(modes)} exclude each other")
    if reevaluate is not None:
        reevaluate = check_metric_names(reevaluate)
    if only is not None and (collect or prepare or status):
        raise ExperimentError(f"--only: {modes[0]} trains nothing; give --only when the runs "
                              "are run or planned")
    if records is not None and (plan or prepare or status):
        # a plan's runs and --prepare evaluate nothing here: no record would ever be written
        raise ExperimentError(f"--records {records}: {modes[0]} evaluates no run, so it writes "
                              "no records; give --records when the runs are run or collected")
    if jobs < 1:
        raise ExperimentError(f"--jobs must be >= 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ExperimentError(f"--threads must be >= 1, got {threads}")
    if threads is not None and modes:
        raise ExperimentError(f"--threads: {modes[0]} trains nothing here; give --threads "
                              "when the runs are run")
    asked = names if isinstance(names, str) else " ".join(names)
    names = experiment_names(names) if isinstance(names, str) else list(names)
    base = PRESETS[preset] if isinstance(preset, str) else preset
    if isinstance(preset, str) and preset not in PRESETS:
        raise ExperimentError(f"--preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    chosen = with_seeds(base, seeds)
    if plan:
        _check_plan_paths(runs_dir, data_root)
        out = Path(out) if out is not None else Path("plans") / f"{asked}-{chosen.name}"
        runs_dir = out / "runs"
    out = Path(out) if out is not None else Path("docs/results")
    store = RunStore(Path(runs_dir) if runs_dir is not None else Path("runs/experiments"),
                     log=log)
    experiments: list[Experiment] = [EXPERIMENTS.get(n)() for n in names]
    if len(experiments) > 1:  # "all": leave out what is made for other presets
        for skipped in [e for e in experiments if e.presets and chosen.name not in e.presets]:
            log(f"experiment {skipped.name}: runs with --preset {'/'.join(skipped.presets or ())}"
                f" only; left out of this {chosen.name} run")
        experiments = [e for e in experiments if not e.presets or chosen.name in e.presets]
    roles = sorted({r for e in experiments for r in e.roles})
    # --collect and --plan read no data: the data are named, never extracted or read
    datas = _data_for(chosen, roles, data, data_root, dict(data_options or {}),
                      prepare=not (collect or plan or status))
    classifier_roles = {r for e in experiments if e.classifier_fid for r in e.roles}
    classifier_data = {d.key: d for r, d in datas.items() if r in classifier_roles}
    features: dict[str, tuple[str, str]] = {}

    def features_of(key: str) -> tuple[str, str] | None:
        """The FID features of one data set, trained when first needed (an evaluation or a
        report), so that training starts at once."""
        if key in classifier_data and key not in features:
            # kept in the runs folder, beside the runs it scores (--prepare fills a plan's cache)
            features[key] = fid_classifier(classifier_data[key], chosen, log,
                                           None if prepare else store.root)
        return features.get(key)

    if prepare:
        _prepare(datas, [features_of(key) for key in sorted(classifier_data)], log)
        return Outcome({}, {})
    command = command or f"sigmavae experiment {' '.join(names)} --preset {chosen.name}"

    def data_of(spec: RunSpec) -> DataChoice:
        return next(d for d in datas.values()
                    if d.train_keys() == {k: spec.train.get(k) for k in d.train_keys()})

    def settings(spec: RunSpec) -> EvalSettings:
        feature = features_of(data_of(spec).key)
        return EvalSettings(images=chosen.eval_images, fid_samples=chosen.fid_samples,
                            mi_data=chosen.mi_data, elbo_samples=chosen.elbo_samples,
                            fid_features=feature[0] if feature else "pixels")

    outcome = Outcome({}, {})
    # each report names the data and FID features of its own runs only
    contexts = {e.name: Context(chosen, own, store, out / e.name, requested_seeds=seeds)
                for e in experiments
                for own in [{r: d for r, d in datas.items() if r in e.roles}]}
    if only is not None:
        _check_rows(only, {s.row for e in experiments for s in e.runs(contexts[e.name])}, asked)

    def with_features(ctx: Context, results: Results) -> None:
        # what the evaluations used, as each wrote it into its record (so that a report
        # collected from records alone reads the same); before any, the features to be used
        described = results.fid_features()
        if described:
            ctx.fid_features = {d.label: "; ".join(described) for d in ctx.data.values()}
        elif not collect:  # --collect reads the records only, so that any machine agrees
            ctx.fid_features = {d.label: feature[1] for d in ctx.data.values()
                                for feature in [features_of(d.key)] if feature}

    if status:
        _log_status(experiments, contexts, store, jobs, log)
        return outcome
    if plan:
        planned: dict[str, str] = {}  # data key -> the plan's --fid-features

        def planned_settings(spec: RunSpec) -> EvalSettings:
            data = data_of(spec)
            if data.key not in planned:
                planned[data.key] = (planned_features(data, chosen, Path(CACHE), log)
                                     if data.key in classifier_data else "pixels")
            return EvalSettings(images=chosen.eval_images, fid_samples=chosen.fid_samples,
                                mi_data=chosen.mi_data, elbo_samples=chosen.elbo_samples,
                                fid_features=planned[data.key])

        specs = seeds_first(unique_runs([s for e in experiments for s in e.runs(contexts[e.name])
                                         if only is None or s.row in only]))
        runs = [PlannedRun(s, Evaluation.of(s, planned_settings(s))) for s in specs]
        arguments = _experiment_arguments(asked, chosen, seeds, data, data_root, data_options)
        outcome.plan = write_plan(out, runs, arguments, chosen, jobs)
        _log_plan(outcome.plan, str(out), runs, log)
        return outcome
    for experiment in experiments:
        ctx = contexts[experiment.name]
        specs = experiment.runs(ctx)
        if not collect:
            chosen_runs = [s for s in specs if only is None or s.row in only]
            log(f"experiment {experiment.name}: {len(chosen_runs)} runs"
                + (f" (--only: {len(specs)} in the report)" if only is not None else ""))
            if reevaluate is not None:
                log(f"experiment {experiment.name}: evaluating {', '.join(reevaluate)} again")
                reevaluate_runs(store, chosen_runs, settings, reevaluate, log)
            else:
                store.execute(chosen_runs, settings, jobs, threads)
        results = Results(store, specs)
        with_features(ctx, results)
        section = experiment.analyse(ctx, results)
        section.notes.extend(results.fid_notes())
        for verdict in section.verdicts:
            verdict.budget = budget_line(verdict.claim, ctx, results)
            if not results.by_row:  # nothing has run: not a finding of any kind
                verdict.status = NOT_RUN
        path = write_report(ctx, experiment, section, command, missing=len(results.missing))
        outcome.reports[experiment.name] = path
        outcome.sections[experiment.name] = section
        if records is not None:
            for run in [r for runs in results.by_row.values() for r in runs]:
                store.export_record(run, Path(records))
            keep_classifiers(store.root, Path(records))
        log(f"experiment {experiment.name}: wrote {path}")
    if len(experiments) > 1:
        outcome.index = write_index(out, [(e, outcome.reports[e.name],
                                           outcome.sections[e.name]) for e in experiments],
                                    command)
        log(f"experiment: wrote {outcome.index}")
    return outcome


def _log_status(experiments: Sequence[Experiment], contexts: dict[str, Context],
                store: RunStore, jobs: int, log: Callable[[str], None]) -> None:
    """``--status``: each experiment's runs, then (for several) all of them once."""
    everything: list[RunSpec] = []
    finished = finished_times(store)  # the run folders' times, read once for every experiment
    for experiment in experiments:
        specs = unique_runs(experiment.runs(contexts[experiment.name]))
        everything += specs
        log(f"experiment {experiment.name}: "
            + "\n".join(describe_progress(store, specs, jobs, finished)))
    if len(experiments) > 1:
        lines = describe_progress(store, unique_runs(everything), jobs, finished)
        log(f"all of them: {lines[0]}\n{lines[-1]}")


def _check_rows(only: Sequence[str], rows: set[str], asked: str) -> None:
    """Every ``--only`` row is a row of the experiments asked for."""
    listed = f"the rows of {asked}: {', '.join(sorted(rows))}"
    if not only:
        raise ExperimentError(f"--only: no rows given; {listed}")
    unknown = [row for row in only if row not in rows]
    if unknown:
        raise ExperimentError(f"--only {','.join(only)}: {', '.join(unknown)} "
                              f"{'is not a row' if len(unknown) == 1 else 'are not rows'}; "
                              f"{listed}")


def _check_plan_paths(runs_dir: str | Path | None, data_root: str | None) -> None:
    """A plan's commands run from its folder, which may be copied elsewhere: its runs live in
    it, and a data root of the user's must not depend on the folder the plan was made in."""
    if runs_dir is not None:
        raise ExperimentError("--runs-dir: a plan keeps its runs in its own folder (OUT/runs), "
                              "so that it is one folder to copy; leave --runs-dir out")
    if data_root is not None and not Path(data_root).is_absolute():
        raise ExperimentError(f"--data-root: expected an absolute path with --plan (its "
                              f"commands run from the plan folder), got {data_root!r}")


def _experiment_arguments(names: str, preset: Preset, seeds: int | None, data: str | None,
                          data_root: str | None,
                          data_options: dict[str, Any] | None) -> list[str]:
    """The ``sigmavae`` arguments that name the same runs: ``experiment NAME --preset P`` and
    the ``--seeds`` and ``--data`` flags that were given."""
    arguments = ["experiment", *names.split(), "--preset", preset.name]
    if seeds is not None:
        arguments += ["--seeds", str(seeds)]
    if data is not None:
        arguments += ["--data", data]
    if data_root is not None:
        arguments += ["--data-root", data_root]
    for key, value in sorted((data_options or {}).items()):
        # as YAML reads it back (True -> true), the way --data-option parses its values
        shown = value if isinstance(value, str) else json.dumps(value)
        arguments += ["--data-option", f"{key}={shown}"]
    return arguments


def _log_plan(plan: Plan, shown: str, runs: Sequence[PlannedRun],
              log: Callable[[str], None]) -> None:
    log(f"experiment: planned {plan.runs} runs in {shown}/ (each run's train.yaml under runs/, "
        "one command line per run in commands.txt); no data read, nothing trained")
    roots = {str(run.config().get("data_root") or "") for run in runs}
    relative = sorted(r for r in roots
                      if r and not Path(r).is_absolute() and not r.startswith(f"{CACHE}/"))
    if relative:  # the paper preset's data/svhn ...: read from the plan folder
        log(f"experiment: the runs read {', '.join(relative)} relative to the plan folder: "
            "put (or link) the data there")
    for line in plan.instructions(shown):
        log("  " + line)


def _prepare(datas: dict[str, DataChoice], features: Sequence[tuple[str, str] | None],
             log: Callable[[str], None]) -> None:
    """Say what ``--prepare`` made: the data (extracted by :func:`_data_for`) and the FID
    features (trained by then)."""
    for data in {d.key: d for d in datas.values()}.values():
        log(f"experiment: data ready: {data.label} ({data.data_root or 'its default place'})")
    for feature in features:
        if feature is not None:
            log(f"experiment: FID features ready: {feature[0]}")
