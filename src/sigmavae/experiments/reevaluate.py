"""Evaluate some metrics of finished runs again, from their kept checkpoints.

``sigmavae experiment NAME --reevaluate fid`` is for a metric that changed (a new output such as
FID's bootstrap error, a fixed bug): training is not redone, every other metric of a run is kept.
Each run's new results replace the old ones of those metrics in its ``eval.json`` (and
``eval.md``), written atomically once the metrics have finished: a stop or a crash leaves the
old evaluation as it was. A run kept only as a record (no checkpoint) keeps its numbers and is
named; a run another process holds is left to it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..run.lock import RunLock, RunLockedError
from .runs import (
    EvalSettings,
    Evaluation,
    ExperimentError,
    ExperimentStopped,
    RunSpec,
    RunStore,
    read_seconds,
    unique_runs,
    write_atomic,
    write_wall_seconds,
)


@dataclass
class Reevaluated:
    """What :func:`reevaluate` did: run ids evaluated again, kept (records without a
    checkpoint), and skipped (not evaluated yet, or held by another process)."""

    done: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def check_metric_names(metrics: Sequence[str]) -> list[str]:
    """The registered metric names of ``--reevaluate`` (an ExperimentError naming the
    unknown ones and the choices)."""
    from ..metrics.report import parse_metrics

    try:
        return parse_metrics(list(metrics))
    except ValueError as err:
        raise ExperimentError(f"--reevaluate: {err}") from None


def reevaluate_runs(store: RunStore, specs: Sequence[RunSpec],
               settings: Callable[[RunSpec], EvalSettings], metrics: Sequence[str],
               log: Callable[[str], None]) -> Reevaluated:
    """Evaluate ``metrics`` of every evaluated run of ``specs`` again, with the evaluation
    settings of its experiment (``settings``), one run after another in this process.

    The seconds are added to the run's ``eval_seconds.txt`` (its evaluation cost includes them)
    and ``wall_seconds.txt`` is their sum with the training's again.

    Raises:
        ExperimentStopped: a stop signal came during a run's metrics (that run keeps its old
            evaluation; the runs before it have their new one).
    """
    from ..metrics.report import evaluate_checkpoint, merge_reports, render_markdown
    from ..run.stopping import StopRequested

    outcome = Reevaluated()
    for spec in unique_runs(specs):
        folder, status = store.folder(spec), store.status(spec)
        if status != "evaluated":
            log(f"  skip  {spec.run_id}: not evaluated yet ({status}); its evaluation will "
                "compute every metric")
            outcome.skipped.append(spec.run_id)
            continue
        checkpoint = store.checkpoint(spec)
        evaluation = Evaluation.of(spec, settings(spec))
        names = [m for m in metrics if m in evaluation.metrics]
        if not names:
            log(f"  skip  {spec.run_id}: its evaluation has none of {', '.join(metrics)}")
            outcome.skipped.append(spec.run_id)
            continue
        if not checkpoint.is_file():
            had = _evaluated(folder, names)
            kept = (f"its evaluation of {', '.join(had)}" if had else
                    f"its evaluation, which has no {', '.join(names)}")
            log(f"  kept  {spec.run_id}: no checkpoint here (a record of a run trained "
                f"elsewhere); it keeps {kept}")
            outcome.kept.append(spec.run_id)
            continue
        try:
            with RunLock(folder):
                start = time.perf_counter()
                result = evaluate_checkpoint(checkpoint, names, out=None, tune_malloc=True,
                                             log=lambda m: None, **evaluation.options)
                seconds = time.perf_counter() - start
                old = json.loads((folder / "eval.json").read_text())
                merged = merge_reports(old, result.report)
                write_atomic(folder / "eval.json", (json.dumps(merged, indent=2) + "\n").encode())
                write_atomic(folder / "eval.md", render_markdown(merged).encode())
                _add_seconds(folder, seconds)
        except RunLockedError as err:
            log(f"  left  {spec.run_id} to the process that holds it: {err}")
            outcome.skipped.append(spec.run_id)
            continue
        except StopRequested as stop:
            log(f"  stopped re-evaluation of {spec.run_id}: its evaluation is unchanged")
            raise ExperimentStopped(stop.signum) from None
        except (OSError, ValueError) as err:  # unreadable eval.json, another evaluation
            raise ExperimentError(f"run {folder}: cannot re-evaluate {', '.join(names)}: "
                                  f"{err}") from None
        log(f"  done  re-evaluation of {spec.run_id} ({', '.join(names)}) in {seconds:.0f} s")
        outcome.done.append(spec.run_id)
    return outcome


def _evaluated(folder: Path, names: Sequence[str]) -> list[str]:
    """Which of metrics ``names`` the run's ``eval.json`` holds (none if it is unreadable)."""
    try:
        metrics = json.loads((folder / "eval.json").read_text()).get("metrics", {})
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in names if name in metrics]


def _add_seconds(folder: Path, seconds: float) -> None:
    evaluated = (read_seconds(folder / "eval_seconds.txt") or 0.0) + seconds
    (folder / "eval_seconds.txt").write_text(f"{evaluated:.1f}\n")
    write_wall_seconds(folder)


__all__ = ["Reevaluated", "check_metric_names", "reevaluate_runs"]
