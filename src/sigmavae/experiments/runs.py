"""Runs of an experiment: ordinary training configs, trained and evaluated through the library.

Each run is trained with :class:`~sigmavae.training.Trainer` from its ``train.yaml`` and
evaluated with :func:`~sigmavae.metrics.evaluate_checkpoint` from one :class:`Evaluation`; the
``--plan`` command lines (``sigmavae train ...`` and ``sigmavae eval ...``) are generated from the
same config file and the same :class:`Evaluation`, so a planned run and a direct one cannot
differ.

A run is identified by its label, seed and a digest of its training config, so that two
experiments asking for the same training (the beta-sweep's optimal-sigma run and the decoders'
one) share one run, and a finished run is found and reused. Its folder holds ``train.yaml``
(the config, ``out`` pointing at the folder), the trainer's outputs (``final.json``,
``steps.csv``, checkpoints, grids) and ``eval.json`` (the test metrics).

State of a run, from its files: ``new`` -> ``started`` (a checkpoint: ``--resume auto`` goes on
from it) -> ``trained`` (``final.json``) -> ``evaluated`` (``eval.json``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import multiprocessing
import os
import re
import shlex
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..messages import first_line
from ..objective import OBJECTIVES
from ..run.lock import RunLock, RunLockedError
from .presets import ExperimentError, cache_dir

#: Metrics every run is evaluated with (the union of what the experiments read).
EVAL_METRICS = ("elbo", "discretized", "mi", "fid", "fid_draws")


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``row`` names it in tables (the published row, e.g. ``beta_vae_0.01``),
    ``label`` is how people read it; ``train`` holds its TrainConfig keys (no ``out``).

    ``metrics`` are what its evaluation computes and ``eval_options`` keyword arguments of
    :func:`~sigmavae.metrics.evaluate_checkpoint` over the experiment's (they win), e.g. a
    video model's ``{"video_samples": 10, "data_options": {"frames": 30}}``; neither is part of
    the run's identity (only training is).
    """

    row: str
    label: str
    train: dict[str, Any]
    seed: int
    metrics: tuple[str, ...] = EVAL_METRICS
    eval_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        # named by the head, not the row: two tables' rows with one config share one run
        identity = json.dumps(portable(self.train), sort_keys=True)
        digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
        objective = self.train.get("objective", "elbo")
        # an objective that fixes its head (SVG's) names the run; else the head does
        name = (objective if OBJECTIVES.get(objective).implied_head is not None
                else self.train.get("likelihood", "run"))
        if self.train.get("model", "conv") != "conv":  # e.g. svg-optimal_sigma-s0-...
            name = f"{self.train['model']}-{name}"
        return f"{name}-s{self.seed}-{digest}"

    def config(self, folder: Path) -> dict[str, Any]:
        return {**self.train, "seed": self.seed, "out": str(folder), "progress": False}


def portable(train: dict[str, Any]) -> dict[str, Any]:
    """``train`` as it identifies a run on any machine: a ``data_root`` inside the sigmavae cache
    (where the shipped archives are extracted) is written relative to it, so that a run's id,
    and the records committed under it, do not depend on the user's home folder."""
    root = train.get("data_root")
    if not root:
        return train
    try:
        relative = Path(root).resolve().relative_to(cache_dir().resolve())
    except ValueError:  # the user's own folder: its path is part of what the run is
        return train
    return {**train, "data_root": f"<cache>/{relative.as_posix()}"}


@dataclass(frozen=True)
class EvalSettings:
    """How each run is evaluated (the same for every run of an experiment)."""

    images: int | None
    fid_samples: int
    mi_data: int
    elbo_samples: int
    fid_features: str  # "classifier:PATH", "pixels", "inception[:PATH]"

    def options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~sigmavae.metrics.evaluate_checkpoint`."""
        return {"limit": self.images, "elbo_samples": self.elbo_samples,
                "fid_samples": self.fid_samples, "mi_data": self.mi_data,
                "fid_features": self.fid_features}


@dataclass(frozen=True)
class Evaluation:
    """How one run is evaluated: its metrics and the keyword arguments of
    :func:`~sigmavae.metrics.evaluate_checkpoint` (metric options such as ``elbo_samples``, and
    ``limit``, ``batch_size``, ``data_options``), both for the direct call and for the
    equivalent ``sigmavae eval`` command line of ``--plan``."""

    metrics: tuple[str, ...]
    options: Mapping[str, Any]

    @classmethod
    def of(cls, spec: RunSpec, settings: EvalSettings) -> Evaluation:
        return cls(spec.metrics, {**settings.options(), **spec.eval_options})

    def run(self, checkpoint: Path, out: Path) -> Any:
        """Evaluate ``checkpoint`` and write ``out`` (JSON, markdown beside it); progress on
        stderr. Returns the :class:`~sigmavae.metrics.report.CheckpointReport`."""
        from ..metrics.report import evaluate_checkpoint, stderr_log

        # tune_malloc as sigmavae eval (the command line of --plan) has it by default
        return evaluate_checkpoint(checkpoint, list(self.metrics), out=out, log=stderr_log,
                                   tune_malloc=True, **self.options)

    def command(self, checkpoint: Path, out: Path) -> list[str]:
        """The ``sigmavae eval`` arguments that do what :meth:`run` does."""
        from ..metrics.report import eval_flags

        options = dict(self.options)
        args = ["eval", str(checkpoint), "--metrics", ",".join(self.metrics)]
        for key, value in sorted((options.pop("data_options", None) or {}).items()):
            args += ["--data-option", f"{key}={value}"]
        for key in ("limit", "batch_size"):  # evaluate_checkpoint's own keywords
            value = options.pop(key, None)
            if value is not None:
                args += [f"--{key.replace('_', '-')}", str(value)]
        return args + eval_flags(options) + ["--out", str(out)]


@dataclass
class RunResult:
    """A finished run's numbers: the trainer's ``final.json``, ``eval.json``, and the path of
    its ``steps.csv``."""

    spec: RunSpec
    folder: Path
    final: dict[str, Any]
    evaluation: dict[str, Any]
    #: why its FID is left out of a report (another feature extractor than the report's)
    fid_left_out: str | None = None

    def metric(self, name: str) -> dict[str, Any]:
        return self.evaluation.get("metrics", {}).get(name, {"available": False})

    def steps(self) -> list[dict[str, str]]:
        return self._csv("steps.csv")

    def epochs(self) -> list[dict[str, str]]:
        return self._csv("epochs.csv")

    def _csv(self, name: str) -> list[dict[str, str]]:
        path = self.folder / name
        if not path.is_file():
            return []
        with path.open(newline="") as f:
            return list(csv.DictReader(f))


@dataclass
class RunStore:
    """The folder of all runs (``--runs-dir``), shared by every experiment."""

    root: Path
    log: Callable[[str], None] = field(default=lambda message: print(message, flush=True))

    def folder(self, spec: RunSpec) -> Path:
        return self.root / spec.run_id

    def status(self, spec: RunSpec) -> str:
        folder = self.folder(spec)
        if (folder / "final.json").is_file():
            return "evaluated" if (folder / "eval.json").is_file() else "trained"
        if (folder / "checkpoints" / "last.ckpt").is_file():
            return "started"
        return "new"

    def write_config(self, spec: RunSpec) -> Path:
        """``<run>/train.yaml``: the run's ``sigmavae train --config`` file."""
        folder = self.folder(spec)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "train.yaml"
        text = yaml.safe_dump(spec.config(folder), sort_keys=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        return path

    def checkpoint(self, spec: RunSpec) -> Path:
        return self.folder(spec) / "checkpoints" / "last.ckpt"

    def result(self, spec: RunSpec) -> RunResult | None:
        """The numbers of an evaluated run, else None."""
        folder = self.folder(spec)
        if self.status(spec) != "evaluated":
            return None
        try:
            final = json.loads((folder / "final.json").read_text())
            evaluation = json.loads((folder / "eval.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ExperimentError(f"run {folder}: unreadable results ({err}); delete the run "
                                  "folder to rerun it") from None
        return RunResult(spec, folder, final, evaluation)

    def export_record(self, result: RunResult, records: Path) -> Path:
        """Copy the small files of an evaluated run that the reports read into
        ``records/<run id>/`` (a run store of its own, for ``--collect --runs-dir records``):
        ``final.json``, ``eval.json``, ``steps.csv``, the prior-sample grid, the wall seconds,
        and ``train.yaml`` (the training config as it identifies the run, no machine paths).
        Checkpoints stay behind. Returns the record's folder."""
        target = records / result.spec.run_id
        target.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            source = result.folder / name
            if source.is_file() and source.resolve() != (target / name).resolve():
                write_atomic(target / name, source.read_bytes())
        evaluation = without_machine_paths(result.evaluation)
        write_atomic(target / "eval.json", (json.dumps(evaluation, indent=2) + "\n").encode())
        config = {**portable(result.spec.train), "seed": result.spec.seed}
        write_atomic(target / "train.yaml", yaml.safe_dump(config, sort_keys=True).encode())
        return target

    # -- execution ------------------------------------------------------------------------------
    def execute(self, specs: Sequence[RunSpec], settings: Callable[[RunSpec], EvalSettings],
                jobs: int = 1, threads: int | None = None) -> None:
        """Train and evaluate every run that is not evaluated yet, ``jobs`` at a time.

        Trainings and evaluations are separate jobs in ``jobs`` worker processes (each imports
        torch once and gets ``threads`` threads, by default ``cores / jobs``), through the
        library (:func:`run_job`), their output in ``<run>/train.log`` and ``eval.log``. A
        trained run is evaluated before the next training starts, so that finished records
        come as early as they can; ``settings`` is asked for a run's evaluation only then (the
        FID features may be trained at that point). Runs stopped part-way train first, then
        the others seed by seed (:func:`seeds_first`). A failing run stops nothing else; the
        first error is raised at the end. A run that another process trains
        (:class:`RunElsewhere`) is left to it: said in the log, not a failure (its record comes
        when that process is done).
        """
        todo = [s for s in unique_runs(specs) if self.status(s) != "evaluated"]
        done = len(unique_runs(specs)) - len(todo)
        self.log(f"experiment: {done} of {done + len(todo)} runs already evaluated, "
                 f"{len(todo)} to run ({jobs} at a time)")
        if not todo:
            return
        # a stopped run first (its steps are spent), then seed by seed (see seeds_first)
        trainable = [s for s in todo if self.status(s) in ("new", "started")]
        to_train = deque(sorted(seeds_first(trainable), key=lambda s: self.status(s) != "started"))
        to_evaluate = deque(s for s in todo if self.status(s) == "trained")
        if threads is None:
            threads = max(1, (os.cpu_count() or 1) // jobs)
        failures: list[str] = []
        elsewhere: list[str] = []
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                 initializer=_init_worker, initargs=(threads,)) as pool, \
                _stop_passed_on(pool) as stopped:
            running: dict[Future[float], tuple[RunSpec, str]] = {}
            while (to_train or to_evaluate or running) and not (stopped and not running):
                while len(running) < jobs and (to_evaluate or to_train) and not stopped:
                    queue, what = ((to_evaluate, "evaluation") if to_evaluate
                                   else (to_train, "training"))
                    spec = queue.popleft()
                    # another process (an experiment sharing this runs folder) may have
                    # finished the run since the queue was made: not done twice, so that its
                    # evaluation (with metrics evaluated again since) is not overwritten
                    now = self.status(spec)
                    if now == "evaluated":
                        self.log(f"  skip  {spec.run_id}: evaluated meanwhile by another "
                                 "process")
                        continue
                    if what == "training" and now == "trained":
                        to_evaluate.append(spec)
                        continue
                    if what == "evaluation":
                        evaluation = Evaluation.of(spec, settings(spec))
                        job = pool.submit(run_job, str(self.folder(spec)), evaluation)
                    else:
                        self.write_config(spec)
                        job = pool.submit(run_job, str(self.folder(spec)), None)
                    running[job] = (spec, what)
                    self.log(f"  start {running[job][1]} of {spec.run_id} ({spec.label}, "
                             f"seed {spec.seed})")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for job in finished:
                    spec, what = running.pop(job)
                    try:
                        seconds = job.result()
                    except RunElsewhere as err:
                        elsewhere.append(spec.run_id)
                        self.log(f"  left  {spec.run_id} to the process that trains it: {err}")
                        continue
                    except Exception as err:  # a stopped worker may just end
                        if not stopped and not isinstance(err, ExperimentError):
                            raise
                        if not stopped:
                            failures.append(str(err))
                        self.log(f"  {'stopped' if stopped else 'FAILED'} {spec.run_id}: {err}")
                        continue
                    self.log(f"  done  {what} of {spec.run_id} in {seconds:.0f} s")
                    if what == "training":
                        to_evaluate.append(spec)
        if stopped:
            raise ExperimentStopped(stopped[0])
        if failures:
            raise ExperimentError(f"{len(failures)} run(s) failed; first: {failures[0]}")
        if elsewhere:
            self.log(f"experiment: {len(elsewhere)} run(s) left to the process(es) that train "
                     f"them ({', '.join(elsewhere)}): run the same command again when they "
                     "finish to have their records in the reports")


#: The files of a run besides ``eval.json`` and ``train.yaml`` that a record keeps: the
#: figures' inputs included (an image run's prior samples, a video run's prediction strip, see
#: ``video.prediction_strip``), so that a report rebuilt from records shows them too.
RECORD_FILES = ("final.json", "steps.csv", "epochs.csv", "samples-16.png",
                "samples-draws-16.png", "prediction-strip-3x2.png", "train_seconds.txt",
                "eval_seconds.txt", "wall_seconds.txt")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a ``.partial`` file renamed over it: a reader (or a
    crash) sees the old file or the new one, never a part."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def without_machine_paths(value: Any) -> Any:
    """``value`` with every absolute path string replaced by its file name (records are
    committed; where the checkpoint lay on the machine that ran it is not part of them)."""
    if isinstance(value, dict):
        return {k: without_machine_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_machine_paths(v) for v in value]
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(r"\1", value)
    return value


#: An absolute POSIX path (at least one folder) inside a string; group 1 is its file name.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")


class RunElsewhere(ExperimentError):
    """A run that another process holds (trains or evaluates): this one did not start it and
    touched none of its files. Not a failure of the experiment: the other process finishes it."""


class ExperimentStopped(ExperimentError):
    """A stop signal ended the experiment: every running training checkpointed itself."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by signal {signum}: each running training saved its "
                         "checkpoint; run the same command to resume")


@contextlib.contextmanager
def _stop_passed_on(pool: ProcessPoolExecutor) -> Iterator[list[int]]:
    """While the block runs, SIGTERM/SIGINT to this process are passed on to the pool's workers
    (a training checkpoints and returns on either) and recorded in the yielded list, so that
    the caller stops submitting, waits for the running jobs and leaves no worker behind. Off
    the main thread, signals are left alone."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(OSError):
                os.kill(process.pid, signum)

    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


#: Stop signals a worker received while idle (no job's own handlers installed).
_IDLE_STOPS: list[int] = []


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # An idle worker must outlive a stop signal: dying would break the pool and leave the
    # parent waiting in its shutdown. It records the signal instead; a job that starts after
    # one is not begun, and a running job's own handlers (the trainer's, the evaluation's)
    # take over while it runs and give these back when it ends.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: _IDLE_STOPS.append(signum))


def train_command(folder: Path) -> list[str]:
    """``sigmavae train`` of the run in ``folder`` (its ``train.yaml``; a started run goes on)."""
    return ["train", "--config", str(folder / "train.yaml"), "--resume", "auto"]


def _train(folder: Path) -> int:
    """Train (or resume) the run of ``folder``: 0, or ``128 + signal`` after a stop (the
    checkpoint is saved), as ``sigmavae train`` exits."""
    from ..run import TrainConfig
    from ..training import Trainer

    # as sigmavae train runs it (train_command): tune_malloc and the speed hint on unless set
    config = TrainConfig.from_yaml(folder / "train.yaml").with_command_defaults()
    result = Trainer(config).fit(resume="auto")
    # after a stop, the trainer has printed where it saved the checkpoint (the log's last line)
    return 128 + int(result["signal"]) if result.get("interrupted") else 0


def _evaluate(folder: Path, evaluation: Evaluation) -> int:
    """Evaluate the run of ``folder`` under its lock: 0, or ``128 + signal`` after a stop
    (nothing written), as ``sigmavae eval`` exits.

    Raises:
        RunLockedError: another process holds the run (nothing was done).
    """
    from ..run.stopping import StopRequested

    # held while it evaluates, as training holds it: a second experiment on this runs folder
    # leaves the run to this one (RunLockedError, see run_job) instead of evaluating it too
    with RunLock(folder):
        try:
            result = evaluation.run(folder / "checkpoints" / "last.ckpt", folder / "eval.json")
        except StopRequested as stop:
            print(f"sigmavae eval: {stop}; nothing written", file=sys.stderr)
            return 128 + stop.signum
    print(result.markdown)
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0


def run_job(folder: str, evaluation: Evaluation | None) -> float:
    """In a worker: train the run in ``folder`` (``evaluation`` None) or evaluate it, through
    the library, the output in the run folder's ``train.log`` / ``eval.log`` (headed by the
    equivalent command line); the seconds in ``train_seconds.txt`` (summed over every start of
    the training, interrupted ones included: a resumed run's wall time is all of it) or
    ``eval_seconds.txt`` (the last evaluation); after an evaluation, their sum in
    ``wall_seconds.txt``. Returns this call's seconds.

    Raises:
        RunElsewhere: another process holds the run (nothing of it was touched).
        ExperimentError: the job failed or was stopped (the message ends with the log's last
            line and names the log).
    """
    run = Path(folder)
    what = "training" if evaluation is None else "evaluation"
    if _IDLE_STOPS:  # stopped between jobs: this one is not begun
        raise ExperimentError(f"run {run.name}: {what} not started: stopped by signal "
                              f"{_IDLE_STOPS[-1]}")
    try:  # a run another process trains: touch none of its files (its log, its seconds)
        RunLock(run).check_free()
    except RunLockedError as err:
        raise RunElsewhere(f"run {run.name}: {what} not started: {first_line(err)}") from None
    log = run / ("train.log" if evaluation is None else "eval.log")
    command = (train_command(run) if evaluation is None
               else evaluation.command(run / "checkpoints" / "last.ckpt", run / "eval.json"))
    start = time.perf_counter()
    code: int | str = "not run"
    lost_race = False  # another process claimed the run between the check above and the claim
    try:
        with log.open("a") as out, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            print(f"$ sigmavae {shlex.join(command)}", flush=True)
            try:
                code = _train(run) if evaluation is None else _evaluate(run, evaluation)
            except RunLockedError as err:  # nothing was done: one line, no seconds
                lost_race = True
                print(f"not started: {first_line(err)}", file=sys.stderr)
            except Exception as err:  # a crash in one run must not stop the others
                traceback.print_exc()
                code = f"{type(err).__name__}: {first_line(err)}"
                print(f"error: {first_line(err)}", file=sys.stderr)
    finally:
        seconds = time.perf_counter() - start
        times = run / f"{log.stem}_seconds.txt"
        if not lost_race:  # the live run adds its own seconds to what the file holds
            before = (read_seconds(times) or 0.0) if evaluation is None else 0.0
            times.write_text(f"{before + seconds:.1f}\n")
    if lost_race:
        raise RunElsewhere(f"run {run.name}: {what} not started: another process claimed "
                           f"it first (log: {log})")
    if code != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        raise ExperimentError(f"run {run.name}: {what} failed ({code}): "
                              f"{lines[-1] if lines else ''} (log: {log})")
    if evaluation is not None:
        write_wall_seconds(run)
    return seconds


def write_wall_seconds(run: Path) -> None:
    """``wall_seconds.txt``: the whole run's wall time, its training's and evaluation's seconds
    summed (nothing where either file is missing)."""
    parts = [run / "train_seconds.txt", run / "eval_seconds.txt"]
    if all(p.is_file() for p in parts):
        wall = sum(read_seconds(p) or 0.0 for p in parts)
        (run / "wall_seconds.txt").write_text(f"{wall:.1f}\n")


def read_seconds(path: Path) -> float | None:
    """The seconds a ``*_seconds.txt`` of a run holds; None if it is missing or unreadable."""
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


def seeds_first(specs: Sequence[RunSpec]) -> list[RunSpec]:
    """``specs`` seed by seed: every configuration's first seed, then every second seed, ...
    (otherwise in order). A long reproduction then has a one-seed answer for every row early,
    instead of three seeds of the first rows and nothing of the last."""
    return sorted(specs, key=lambda s: s.seed)


def unique_runs(specs: Sequence[RunSpec]) -> list[RunSpec]:
    """``specs`` without repeats (one per run id, the first), in order."""
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        seen.setdefault(spec.run_id, spec)
    return list(seen.values())

