"""Run, plan or collect experiments: ``sigmavae experiment NAME`` is :func:`run_experiments`.

>>> run_experiments(["beta-sweep"], preset="quick", out="docs/results", runs_dir="runs/experiments")

Experiments run in the order of :data:`ORDER` (the beta-sweep first: the decoders experiment
uses its best beta), each training only the runs that are not evaluated yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .framework import EXPERIMENTS, Context, Experiment, Results, Section, budget_line
from .presets import (
    PRESETS,
    DataChoice,
    ExperimentError,
    Preset,
    cache_dir,
    default_data,
    user_data,
    with_seeds,
)
from .report import write_index, write_report
from .runs import EvalSettings, RunSpec, RunStore, write_plan
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
    plan: Path | None = None


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


def fid_classifier(data: DataChoice, preset: Preset,
                   log: Callable[[str], None]) -> tuple[str, str]:
    """The ``--fid-features`` of ``data`` and the note reports print: a classifier trained once
    on its labelled training split (cached), or the pixels where the data has no labels."""
    from ..data import load_dataset
    from ..metrics.fid_classifier import load_classifier_features, train_classifier

    options = dict(data.data_options)
    key = json.dumps({**data.train_keys(), "epochs": preset.classifier_epochs,
                      "images": preset.classifier_images}, sort_keys=True)
    path = (cache_dir() / "fid-classifiers"
            / f"{data.key}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.safetensors")
    if not path.is_file():
        train = load_dataset(data.data, "train", data.data_root, **options)
        if train.labels is None:
            return "pixels", (f"{data.label} has no class labels: Fréchet distance of the raw "
                              "pixels (a weak proxy; not Inception, not comparable with "
                              "published FIDs)")
        test = load_dataset(data.data, "test", data.data_root, **options)
        log(f"experiment: training the FID feature classifier on {data.label} "
            f"({min(len(train), preset.classifier_images or len(train))} labelled images)")
        train_classifier(train.images, train.labels, path, data=data.label,
                         test_images=test.images, test_labels=test.labels,
                         epochs=preset.classifier_epochs, max_images=preset.classifier_images)
    info = load_classifier_features(path).info
    return f"classifier:{path}", info.describe()


def run_experiments(
    names: Sequence[str] | str, *, preset: str | Preset = "quick", out: str | Path = "docs/results",
    runs_dir: str | Path = "runs/experiments", seeds: int | None = None, data: str | None = None,
    data_root: str | None = None, data_options: dict[str, Any] | None = None, jobs: int = 1,
    plan: bool = False, collect: bool = False, command: str | None = None,
    records: str | Path | None = None,
    log: Callable[[str], None] = lambda m: print(m, flush=True),
) -> Outcome:
    """Run (or ``plan``, or ``collect``) the experiments ``names`` and write their reports.

    Args:
        names: experiment names, or ``"all"``.
        preset: ``"quick"``, ``"paper-length"``, ``"paper"`` or a :class:`Preset`.
        out: folder of the reports (one sub-folder per experiment; ``all`` adds README.md).
        runs_dir: folder of the runs (shared by all experiments; finished runs are reused).
        seeds: seeds per configuration (default: the preset's).
        data, data_root, data_options: run on this registered data set instead of the preset's.
        jobs: runs at once on this machine.
        plan: only write every run's config and ``commands.txt`` (for a scheduler).
        collect: only build the reports from the runs that have finished.
        command: the command line printed in the reports.
        records: copy each evaluated run's small files (configs, metrics, step logs, sample
            grid; no checkpoints) into ``records/<run id>/`` after its report is written, so
            that ``collect`` with ``runs_dir=records`` rebuilds the reports from them alone.
    """
    if plan and collect:
        raise ExperimentError("--plan and --collect exclude each other")
    if jobs < 1:
        raise ExperimentError(f"--jobs must be >= 1, got {jobs}")
    names = experiment_names(names) if isinstance(names, str) else list(names)
    base = PRESETS[preset] if isinstance(preset, str) else preset
    if isinstance(preset, str) and preset not in PRESETS:
        raise ExperimentError(f"--preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    chosen = with_seeds(base, seeds)
    out, store = Path(out), RunStore(Path(runs_dir), log=log)
    experiments: list[Experiment] = [EXPERIMENTS.get(n)() for n in names]
    if len(experiments) > 1:  # "all": leave out what is made for other presets
        for skipped in [e for e in experiments if e.presets and chosen.name not in e.presets]:
            log(f"experiment {skipped.name}: runs with --preset {'/'.join(skipped.presets or ())}"
                f" only; left out of this {chosen.name} run")
        experiments = [e for e in experiments if not e.presets or chosen.name in e.presets]
    roles = sorted({r for e in experiments for r in e.roles})
    # --collect reads finished runs only: the data are named, never extracted or read
    datas = _data_for(chosen, roles, data, data_root, dict(data_options or {}),
                      prepare=not collect)
    classifier_roles = {r for e in experiments if e.classifier_fid for r in e.roles}
    classifier_data = {d.key: d for r, d in datas.items() if r in classifier_roles}
    features: dict[str, tuple[str, str]] = {}

    def features_of(key: str) -> tuple[str, str] | None:
        """The FID features of one data set, trained when first needed (an evaluation or a
        report), so that training starts at once."""
        if key in classifier_data and key not in features:
            features[key] = fid_classifier(classifier_data[key], chosen, log)
        return features.get(key)

    command = command or f"sigmavae experiment {' '.join(names)} --preset {chosen.name}"

    def settings(spec: RunSpec) -> EvalSettings:
        key = next(d.key for d in datas.values()
                   if d.train_keys() == {k: spec.train.get(k) for k in d.train_keys()})
        feature = features_of(key)
        return EvalSettings(images=chosen.eval_images, fid_samples=chosen.fid_samples,
                            mi_data=chosen.mi_data, elbo_samples=chosen.elbo_samples,
                            fid_features=feature[0] if feature else "pixels")

    outcome = Outcome({}, {})
    # each report names the data and FID features of its own runs only
    contexts = {e.name: Context(chosen, own, store, out / e.name, requested_seeds=seeds)
                for e in experiments
                for own in [{r: d for r, d in datas.items() if r in e.roles}]}

    def with_features(ctx: Context, results: Results) -> None:
        # what the evaluations used, as each wrote it into its record (so that a report
        # collected from records alone reads the same); before any, the features to be used
        described = sorted({str(r.metric("fid")["features"]) for runs in results.by_row.values()
                            for r in runs if r.metric("fid").get("features")})
        if described:
            ctx.fid_features = {d.label: "; ".join(described) for d in ctx.data.values()}
        elif not collect:  # --collect reads the records only, so that any machine agrees
            ctx.fid_features = {d.label: feature[1] for d in ctx.data.values()
                                for feature in [features_of(d.key)] if feature}

    if plan:
        specs = [s for e in experiments for s in e.runs(contexts[e.name])]
        outcome.plan = write_plan(store, specs, settings, out / "plan")
        (out / "plan" / "preset.json").write_text(json.dumps(asdict(chosen), indent=2) + "\n")
        log(f"experiment: wrote {len(set(s.run_id for s in specs))} run configs under {runs_dir}"
            f" and {outcome.plan} (one line per run: train, then eval)")
        return outcome
    for experiment in experiments:
        ctx = contexts[experiment.name]
        specs = experiment.runs(ctx)
        if not collect:
            log(f"experiment {experiment.name}: {len(specs)} runs")
            store.execute(specs, settings, jobs)
        results = Results(store, specs)
        with_features(ctx, results)
        section = experiment.analyse(ctx, results)
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
        log(f"experiment {experiment.name}: wrote {path}")
    if len(experiments) > 1:
        outcome.index = write_index(out, [(e, outcome.reports[e.name],
                                           outcome.sections[e.name]) for e in experiments],
                                    command)
        log(f"experiment: wrote {outcome.index}")
    return outcome
