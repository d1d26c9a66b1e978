"""``sigmavae experiment NAME --status``: where a long reproduction stands, read from the run
folders alone (no data, no training): each run's state, the epochs a started run has done, and
the training time left, estimated from the runs that have finished (or, for a head none of
whose runs has finished yet, from the epochs its started runs have timed), scaled to this
machine's pace where the finished runs came from another one.

A run is *evaluated* (its report numbers exist), *trained* (waiting for its evaluation),
*training now* (a process holds its folder's lock), *stopped* (it has epochs or a checkpoint but
no process trains it: the next run of the command goes on from its checkpoint) or *to run*.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..run.lock import RunLock
from .runs import RunSpec, RunStore, read_seconds, seeds_first

EVALUATED, TRAINED, TRAINING, STOPPED, TO_RUN = (
    "evaluated", "trained", "training now", "stopped", "to run")


@dataclass(frozen=True)
class RunProgress:
    """One run's state; ``epochs_done`` of ``epochs`` (``None`` where the config is unknown);
    ``epoch_seconds``: the training seconds of each epoch done (``epochs.csv``)."""

    spec: RunSpec
    state: str
    epochs_done: int
    epochs: int | None
    epoch_seconds: tuple[float, ...] = ()

    @property
    def fraction_left(self) -> float:
        """The part of its training still to do, in [0, 1]."""
        if self.state in (EVALUATED, TRAINED):
            return 0.0
        if not self.epochs:
            return 1.0
        return max(0.0, 1.0 - self.epochs_done / self.epochs)


def run_progress(store: RunStore, spec: RunSpec) -> RunProgress:
    """The state of ``spec``'s run in ``store`` (reads its folder; takes no lock)."""
    folder = store.folder(spec)
    status = store.status(spec)
    epoch_seconds = _epoch_seconds(folder / "epochs.csv")
    epochs_done = len(epoch_seconds)
    if status in ("evaluated", "trained"):
        state = EVALUATED if status == "evaluated" else TRAINED
    elif RunLock(folder).holder_alive():
        state = TRAINING
    elif status == "started" or epochs_done:
        state = STOPPED
    else:
        state = TO_RUN
    return RunProgress(spec, state, epochs_done, _epochs(folder, spec), tuple(
        seconds for seconds in epoch_seconds if seconds))  # None or 0: not timed


def describe_progress(store: RunStore, specs: Sequence[RunSpec], jobs: int,
                      finished: Sequence[tuple[str | None, float]] | None = None) -> list[str]:
    """Lines for people: a count per state, each run that is not evaluated with its state and
    epochs (in the order they train), and the training time left at ``jobs`` runs at once,
    estimated from the finished runs' training times (of the same head where one has finished;
    else from the epochs its started runs have timed; else of all of them);
    ``finished`` is :func:`finished_times` of ``store``, read here when not given."""
    runs = [run_progress(store, s) for s in specs]
    counts = {state: sum(r.state == state for r in runs)
              for state in (EVALUATED, TRAINED, TRAINING, STOPPED, TO_RUN)}
    lines = [f"{len(runs)} runs: " + ", ".join(f"{n} {state}" for state, n in counts.items()
                                               if n)]
    # in the order they train (RunStore.execute): the live ones, then those to evaluate, then
    # the stopped ones, then the rest seed by seed
    rank = {TRAINING: 0, TRAINED: 1, STOPPED: 2, TO_RUN: 3}
    by_seed = {id(spec): i for i, spec in enumerate(seeds_first([r.spec for r in runs]))}
    for run in sorted(runs, key=lambda r: (rank.get(r.state, 4), by_seed[id(r.spec)])):
        if run.state != EVALUATED:
            done = (f", epoch {run.epochs_done} of {run.epochs}" if run.epochs
                    and run.state in (TRAINING, STOPPED) else "")
            lines.append(f"  {run.spec.run_id}  {run.spec.label}, seed {run.spec.seed}: "
                         f"{run.state}{done}")
    finished = finished_times(store) if finished is None else finished
    left = _seconds_left(runs, finished)
    if left is None:
        lines.append("time left: unknown until a run in this runs folder has finished training")
    elif left.seconds > 0:
        hours = left.seconds / max(1, min(jobs, sum(r.fraction_left > 0 for r in runs))) / 3600
        guess = (f"; {left.guessed} run(s) of a head with no finished or started run counted "
                 "at the median run's time, though a heavy head costs more"
                 if left.guessed else "")
        pace = (f", scaled by {left.pace:.2g}: the pace of the runs started here against the "
                "finished runs of their heads (another machine or precision)"
                if abs(left.pace - 1) > 0.1 else "")
        lines.append(f"training left: about {hours:.1f} h at {jobs} run(s) at once "
                     f"({left.seconds / 3600:.1f} run-hours, from the training times of the "
                     f"finished runs in this runs folder{pace}{guess}; evaluations come on "
                     "top)")
    return lines


def finished_times(store: RunStore) -> list[tuple[str | None, float]]:
    """``(head, training seconds)`` of every run in ``store`` that has finished training (a
    stopped run's ``train_seconds.txt`` holds its seconds so far: not a run's time)."""
    times = []
    for train_seconds in sorted(store.root.glob("*/train_seconds.txt")):
        seconds = read_seconds(train_seconds)
        config = train_seconds.parent / "train.yaml"
        finished = (train_seconds.parent / "final.json").is_file()
        if seconds and finished and config.is_file():
            head = (yaml.safe_load(config.read_text()) or {}).get("likelihood")
            times.append((head, seconds))
    return times


@dataclass(frozen=True)
class TimeLeft:
    """Training seconds still to do; ``guessed``: runs left with neither a finished run of
    their head nor a timed epoch of one (counted at the median finished run's time); ``pace``:
    the factor the finished runs' times are scaled by (see :func:`_seconds_left`)."""

    seconds: float
    guessed: int = 0
    pace: float = 1.0


def _seconds_left(runs: Sequence[RunProgress], finished: Sequence[tuple[str | None, float]],
                  ) -> TimeLeft | None:
    """The training time still to do, ``None`` when nothing has finished or been timed to
    estimate from.

    The finished runs may have trained on another machine or at another precision (records
    copied in from one with bf16 hardware): a head with a run started here is timed by that
    run's epochs (this machine, now); where a head has both finished runs and a run started
    here, the started run's pace against them (the median ratio over such heads) scales the
    times of the heads that are only timed by finished runs."""
    # head -> seconds of a whole run, from the epochs its started runs have timed
    timed: dict[str | None, list[float]] = {}
    for run in runs:
        if run.epoch_seconds and run.epochs and run.fraction_left:
            timed.setdefault(run.spec.train.get("likelihood"), []).append(
                statistics.median(run.epoch_seconds) * run.epochs)
    if not finished and not timed:
        return None if any(r.fraction_left for r in runs) else TimeLeft(0.0)
    of_head = {head: [s for name, s in finished if name == head] for head in timed}
    paces = [statistics.median(times) / statistics.median(of_head[head])
             for head, times in timed.items() if of_head[head]]
    pace = statistics.median(paces) if paces else 1.0
    everyone = (pace * statistics.median([seconds for _, seconds in finished]) if finished
                else statistics.median([s for times in timed.values() for s in times]))
    total, guessed = 0.0, 0
    for run in runs:
        if run.fraction_left:
            head = run.spec.train.get("likelihood")
            same = timed.get(head) or [pace * seconds for name, seconds in finished
                                       if name == head]
            guessed += not same
            total += run.fraction_left * (statistics.median(same) if same else everyone)
    return TimeLeft(total, guessed, pace)


def _epoch_seconds(path: Path) -> list[float | None]:
    """The ``seconds`` column of an ``epochs.csv`` (one entry per epoch; ``None`` where not
    a number)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [_number(row.get("seconds")) for row in csv.DictReader(f)]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _epochs(folder: Path, spec: RunSpec) -> int | None:
    """The epochs the run trains for: its spec's, else its written ``train.yaml``'s."""
    epochs = spec.train.get("epochs")
    if epochs is None and (folder / "train.yaml").is_file():
        epochs = (yaml.safe_load((folder / "train.yaml").read_text()) or {}).get("epochs")
    return int(epochs) if isinstance(epochs, int) else None


__all__ = ["RunProgress", "describe_progress", "run_progress"]
