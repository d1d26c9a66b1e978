"""What every experiment is made of: the context it runs in, its results, its report section.

Each experiment is a module of this package that registers a subclass of :class:`Experiment`
by name (``sigmavae experiment NAME``) with :func:`register_experiment`. Its ``runs(ctx)`` lists
ordinary training runs (shared between experiments where the configs are equal); its
``analyse(ctx, results)`` turns their numbers (:mod:`.measures`) into a table beside the
published one, figures and a verdict per claim (see :mod:`.claims`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..registry import Registry
from . import claims
from .heads import HEAVY_HEADS, HeadRow
from .measures import (
    TEST_STDERR,
    fid,
    fid_features,
    measured_fid,
    run_row,
    seed_or_test_estimate,
)
from .presets import DataChoice, Preset
from .published import published
from .runs import RunResult, RunSpec, RunStore
from .stats import (
    Bounds,
    Estimate,
    estimate,
    estimate_bounds,
    fmt_estimate,
    fmt_number,
    most_common,
    with_sampling_floor,
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
        self.fid_references = _one_extractor_per_data(
            [r for runs in self.by_row.values() for r in runs])

    def fid_features(self) -> list[str]:
        """The feature extractors of the FIDs the report compares (one per data set)."""
        return sorted(set(self.fid_references.values()))

    def fid_notes(self) -> list[str]:
        """A report note naming each run whose FID is left out (another extractor), with it."""
        left_out = [r for runs in self.by_row.values() for r in runs if r.fid_left_out]
        if not left_out:
            return []
        values = "; ".join(f"{r.spec.label} seed {r.spec.seed}: {measured_fid(r):.1f}"
                           for r in left_out)
        others = "; ".join(sorted({str(fid_features(r)) for r in left_out}))
        return [f"FID of {len(left_out)} run(s) left out of the tables and verdicts: they were "
                f"evaluated with another feature extractor ({others}) than the report's other "
                "runs, and FIDs on different extractors are not comparable (a classifier "
                "retrained on another machine has other weights). Their FIDs: "
                f"{values}. runs.csv keeps them (column fid_in_report)."]

    def fid_cell(self, row: str) -> str:
        """A table's FID cell for ``row``: mean ± SE on the report's extractor, then the FIDs
        of the row's runs scored on another one, marked as not compared (see :meth:`fid_notes`),
        e.g. ``"57.5 (1 seed); other features: 45.2 (not compared)"``."""
        cell = fmt_estimate(self.estimate(row, fid))
        others = [measured_fid(r) for r in self.runs(row) if r.fid_left_out]
        if not others:
            return cell
        values = ", ".join(fmt_number(v) for v in others if v is not None)
        return f"{cell}; other features: {values} (not compared)"

    def runs(self, row: str) -> list[RunResult]:
        return self.by_row.get(row, [])

    def estimate(self, row: str, value: Callable[[RunResult], float | None]) -> Estimate | None:
        """Mean ± SE over the row's seeds; a row of one seed with a value (the others' None:
        no bound, an FID on another extractor), where ``value`` has a standard error within
        the run (:data:`TEST_STDERR`: over the test images; FID's over the samples and test
        images), gets that one (which leaves out the seed-to-seed spread; the tables say what
        it is over). A mean of FIDs over seeds carries at least the runs' own bootstrap error
        (:attr:`.measures.OneSeedError.floors_mean`, :func:`.stats.with_sampling_floor`)."""
        runs = [r for r in self.runs(row) if value(r) is not None]
        one = TEST_STDERR.get(value)
        if len(runs) == 1 and one is not None:
            return seed_or_test_estimate(runs, value, one.stderr, one.over)
        over_seeds = estimate(value(r) for r in runs)
        if one is not None and one.floors_mean:
            return with_sampling_floor(over_seeds, (one.stderr(r) for r in runs))
        return over_seeds

    def bounds(self, row: str, value: Callable[[RunResult], tuple[float | None, float | None]]
               ) -> Bounds | None:
        """Bounds over seeds of a per-run ``(low, high)`` (see :func:`.stats.estimate_bounds`)."""
        return estimate_bounds(value(r) for r in self.runs(row))


def _one_extractor_per_data(runs: list[RunResult]) -> dict[str, str]:
    """Per data set, the feature extractor most of ``runs`` have their FID on (ties: the first
    by description); every run on another one gets :attr:`RunResult.fid_left_out`. Returns the
    extractor of each data set (a JSON key of its training data keys)."""
    by_data: dict[str, list[RunResult]] = {}
    for run in runs:
        if fid_features(run) is not None:
            data = {k: run.spec.train.get(k) for k in ("data", "data_root", "data_options")}
            by_data.setdefault(json.dumps(data, sort_keys=True, default=str), []).append(run)
    references: dict[str, str] = {}
    for key, group in by_data.items():
        reference, _ = most_common(str(fid_features(r)) for r in group)
        references[key] = reference
        for run in group:
            if fid_features(run) != reference:
                run.fid_left_out = f"FID on other features than the report's ({reference})"
    return references


def paper_cell(table: int, row: str, dataset: str | None, metric: str) -> str:
    """The published value of a table cell as the reports print it (``-`` where none)."""
    if dataset is None:
        return "-"
    try:
        value = published(table, row, dataset, metric)
    except KeyError:
        return "-"
    return f"{'< ' if value.relation == '<' else ''}{value.value:g}"


def paper_dataset(data: DataChoice) -> str | None:
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


def csv_rows(results: Results) -> list[dict[str, Any]]:
    """The experiment's ``runs.csv``: one :func:`.measures.run_row` per run."""
    return [run_row(r) for runs in results.by_row.values() for r in runs]


__all__ = [
    "EXPERIMENTS",
    "Context",
    "Experiment",
    "Results",
    "Section",
    "Verdict",
    "budget_line",
    "csv_rows",
    "paper_cell",
    "paper_dataset",
    "register_experiment",
]
