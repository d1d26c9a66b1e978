"""What a run does around its steps, as Fabric callbacks (``Fabric(callbacks=...)``).

The trainer calls each hook with ``fabric.call(hook, **kwargs)`` on every process; a callback
is any object with some of these methods (all arguments by keyword; take exactly these, which
every Fabric version accepts):

========================= =====================================================================
``on_fit_start``          ``(trainer, state)``: set up, model and data ready, after a resume
``on_train_epoch_start``  ``(trainer, epoch)``: ``epoch`` counts from 0
``on_train_batch_end``    ``(trainer, state)``: after every step (``state.step`` is done)
``on_log_step``           ``(trainer, row)``: every ``log_every_n_steps``; ``row`` is the
                          all-reduced ``steps.csv`` row (nats per example)
``on_validation_start``   ``(trainer, state)``: the epoch's steps are done, validation begins
``on_train_epoch_end``    ``(trainer, state, row, report)``: after validation; ``row`` is the
                          ``epochs.csv`` row, ``report`` the validation
                          :class:`~sigmavae.dataset_elbo.ELBOReport`
``on_stop``               ``(trainer, state, signum)``: a stop was requested (a signal);
                          ``state`` is that after the last step; the run returns after this
                          hook
``on_fit_end``            ``(trainer, final)``: the last epoch's metrics (not after a stop)
``on_teardown``           ``(trainer)``: always, last, also after an error
========================= =====================================================================

``state`` is the loop's :class:`~sigmavae.run.state.LoopState` (``epoch``, ``step``,
``skipped``). ``trainer`` is the :class:`~sigmavae.training.Trainer`, of which a callback uses
what :class:`TrainerView` lists: it reads what the run is from ``trainer.run`` (a read-only
:class:`RunInfo`, set before ``on_fit_start``) and acts through three methods:
``trainer.request_stop(signum)`` (stop after the current step),
``trainer.checkpoint(state, path=None)`` (write the run's state; call it on every rank, it
holds a barrier) and ``with trainer.interruptible(phase):`` (work a stop may abandon at once,
such as drawing a grid: nothing a checkpoint holds may change in it). Callbacks that write
files do so on rank 0 only. :func:`default_callbacks` is what a config asks for, in the order
they run.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO, cast

import torch
from lightning_fabric import Fabric
from torch import nn
from tqdm.auto import tqdm

from .. import objective
from ..data import InMemoryBatches
from ..dataset_elbo import NOT_A_BOUND, ELBOReport
from ..run.config import TrainConfig
from ..run.state import LoopState
from ..run.stopping import StopSignals
from .logs import RunCSVLogger, scalars, tensorboard_logger
from .rows import EPOCH_COLUMNS, STEP_COLUMNS, BoundNotes, sigma_columns
from .speed_hints import device_description
from .visuals import plot_curves, reconstruction_grid, sample_grid, save_grid

#: Least seconds between two redraws of ``curves.png`` (the last epoch always redraws it).
CURVES_EVERY_S = 30.0


@dataclass(frozen=True)
class RunInfo:
    """What a run is, for its callbacks (``trainer.run``; fixed once the run is set up).

    Attributes:
        config: the run's settings.
        out, checkpoint_path: the run folder and its ``checkpoints/last.ckpt``.
        resumed_from: the checkpoint the run resumed from, or ``None``.
        fabric: devices and processes (``is_global_zero``, ``world_size``, ``device``,
            ``print``).
        model: the model (the plain module, not the Fabric-wrapped one).
        batches: the training batches (``len``: steps per epoch; ``position``: batches done in
            the current epoch).
        val_images: the validation examples, uint8 ``(N, *data_shape)``.
        head_label: the likelihood head's name, for the console.
        bounds: what the head says of the train and val -ELBO (bound or not, bias notes).
        precision, channels_last: what the run trains with (``--precision auto`` resolved).
        precision_line: the start-of-run line on precision (what ``auto`` chose, or how much
            faster it would be; :func:`~sigmavae.training.speed_hints.precision_line`), or
            ``None``: nothing to say, a resumed run, or not rank 0.
    """

    config: TrainConfig
    out: Path
    checkpoint_path: Path
    resumed_from: Path | None
    fabric: Fabric
    model: nn.Module
    batches: InMemoryBatches
    val_images: torch.Tensor
    head_label: str
    bounds: BoundNotes
    precision: str
    channels_last: bool
    precision_line: str | None


class TrainerView(Protocol):
    """What a hook's ``trainer`` (the :class:`~sigmavae.training.Trainer`) offers a callback:
    what the run is, and the two things a callback may ask of the loop."""

    @property
    def run(self) -> RunInfo: ...

    def request_stop(self, signum: int) -> None: ...

    def checkpoint(self, state: LoopState, path: Path | None = None) -> Path: ...

    def interruptible(self, phase: str) -> contextlib.AbstractContextManager[None]: ...


class StopOnSignal:
    """SIGTERM/SIGINT ask the trainer to stop (``trainer.request_stop``): after the current
    step, or at once in validation and the grids (``trainer.interruptible``). The checkpoint
    callback then saves the state after the last step, and ``fit`` returns ``{"interrupted":
    True, "signal": ..., "step": ...}``; the CLI exits with 128 + signal. Previous handlers
    come back at teardown; off the main thread signals are left alone."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self._handlers: StopSignals | None = None

    def on_fit_start(self, trainer: TrainerView, state: LoopState) -> None:
        self._handlers = StopSignals(self.signals)
        self._handlers.install(trainer.request_stop)

    def on_teardown(self, trainer: TrainerView) -> None:
        if self._handlers is not None:
            self._handlers.restore()
            self._handlers = None


class ProgressBar:
    """Training progress on rank 0, written to ``stream`` (default: stderr, as tqdm writes).

    On a terminal: a tqdm bar per epoch with the running mean of the epoch's training loss
    (nats per example, over the epoch's steps so far: the number the epoch's ``train_loss``
    ends at), and the head's sigma and effective beta after the last step, redrawn with the
    bar (at most 10 times a second); while the epoch validates, the bar says so. Elsewhere (a
    log file, a pipe: ``stream.isatty()`` false) no bar and no carriage returns: the same
    numbers as plain lines, after the run's first step and then every ``every_s`` seconds.
    (With several processes: rank 0's own steps.)

    Args:
        every_s: seconds between two plain lines.
        stream: where to write; ``None``: ``sys.stderr`` when the run starts.
    """

    def __init__(self, every_s: float = 30.0, stream: TextIO | None = None) -> None:
        self.every_s, self.stream = every_s, stream
        self.bar: Any = None
        self._out: TextIO = sys.stderr
        self._on = self._tty = False
        self._lines_at: float | None = None  # when the last plain line was written
        self._shown_at = 0.0  # when the bar's numbers were last read
        self._example = "image"
        self._epoch = ""  # "epoch 2/10"
        self._epoch_started, self._first = 0.0, 0  # when the epoch (re)started, at which batch

    def on_fit_start(self, trainer: TrainerView, state: LoopState) -> None:
        run = trainer.run
        self._on = run.fabric.is_global_zero
        self._out = self.stream or sys.stderr
        self._tty = bool(getattr(self._out, "isatty", lambda: False)())
        self._example = "sequence" if objective.is_sequence(
            cast(objective.Model, run.model)) else "image"

    def on_train_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        self._close()
        run = trainer.run
        self._epoch = f"epoch {epoch + 1}/{run.config.epochs}"
        self._epoch_started, self._first = time.monotonic(), run.batches.position
        if self._on and self._tty:
            self.bar = tqdm(total=len(run.batches), initial=run.batches.position,
                            desc=self._epoch, leave=False, dynamic_ncols=True, file=self._out,
                            unit="step")
            self._shown_at = 0.0

    def on_train_batch_end(self, trainer: TrainerView, state: LoopState) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if self.bar is not None:
            # the numbers are read (a device synchronisation on a GPU) only when the bar may
            # redraw, not at every step, and after the epoch's last step (shown while the
            # epoch validates)
            batches = trainer.run.batches
            if (now - self._shown_at >= self.bar.mininterval
                    or batches.position >= len(batches)):
                self.bar.set_postfix_str(self._numbers(trainer, state, mean=""),
                                         refresh=False)
                self._shown_at = now
            self.bar.update(1)
        elif not self._tty and (self._lines_at is None or now - self._lines_at >= self.every_s):
            batches = trainer.run.batches
            done = batches.position - self._first
            rate = done / max(now - self._epoch_started, 1e-9)
            print(f"{self._epoch} step {batches.position}/{len(batches)}: "
                  f"{self._numbers(trainer, state)}; {rate:.3g} steps/s",
                  file=self._out, flush=True)
            self._lines_at = now

    def on_validation_start(self, trainer: TrainerView, state: LoopState) -> None:
        if self.bar is not None:
            n = trainer.run.val_images.shape[0]
            self.bar.set_description(f"{self._epoch} validating {n} {self._example}s")

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        self._close()  # the console's epoch line follows

    def on_stop(self, trainer: TrainerView, state: LoopState, signum: int) -> None:
        self._close()

    def on_teardown(self, trainer: TrainerView) -> None:
        self._close()

    def _numbers(self, trainer: TrainerView, state: LoopState,
                 mean: str = " (epoch mean)") -> str:
        """``loss X nats/image (epoch mean), sigma S, beta B`` (what the head has)."""
        loss, _, _, count = state.epoch_sums.tolist()
        text = (f"loss {_num(loss / count)} nats/{self._example}{mean}" if count
                else "loss n/a (no step yet)")
        head = cast(objective.Model, trainer.run.model).head
        columns = sigma_columns(head)
        if columns["sigma"] is not None:
            text += f", sigma {columns['sigma']:.4g}"
        if columns["effective_beta"] is not None:
            text += f", beta {columns['effective_beta']:.3g}"
        return text

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunFolder:
    """``config.json`` when a run starts (not on resume) and ``final.json`` when it ends."""

    def on_fit_start(self, trainer: TrainerView, state: LoopState) -> None:
        run = trainer.run
        if run.fabric.is_global_zero:
            run.out.mkdir(parents=True, exist_ok=True)
            if run.resumed_from is None:
                (run.out / "config.json").write_text(json.dumps(run.config.to_dict(), indent=2))

    def on_fit_end(self, trainer: TrainerView, final: dict[str, Any]) -> None:
        run = trainer.run
        if run.fabric.is_global_zero and final:
            # what the run's wall time was measured on, with the precision it really ran at
            # (added to the dict fit() returns too, so that it reads as final.json)
            final["ran_on"] = {
                "device": device_description(run.fabric.device),
                "processes": run.fabric.world_size, "precision": run.precision,
                "channels_last": run.channels_last, "torch": torch.__version__}
            (run.out / "final.json").write_text(json.dumps(final, indent=2))


class MetricLogs:
    """``steps.csv``, ``epochs.csv`` (:class:`~.logs.RunCSVLogger`, a Fabric logger; columns
    and rows: :mod:`.rows`) and ``tensorboard/`` (Fabric's TensorBoard logger, tags by
    :func:`~.logs.scalars`: ``train/*`` per logged step, ``val/*`` and ``epoch/*`` per epoch;
    the grids as images ``samples`` and ``reconstructions`` (:meth:`log_image`, called by the
    grid callbacks); at the end the config as hyperparameters with the final metrics
    ``final/*``), rank 0 only. On resume the rows and events after the checkpoint's step are
    dropped: the resumed run logs them again, so the files read as those of an uninterrupted
    run."""

    def __init__(self) -> None:
        self.steps: RunCSVLogger | None = None
        self.epochs: RunCSVLogger | None = None
        self.tensorboard: Any = None

    def on_fit_start(self, trainer: TrainerView, state: LoopState) -> None:
        run = trainer.run
        if not run.fabric.is_global_zero:
            return
        resume_step = None if run.resumed_from is None else state.step
        self.steps = RunCSVLogger(run.out / "steps.csv", STEP_COLUMNS, resume_step)
        self.epochs = RunCSVLogger(run.out / "epochs.csv", EPOCH_COLUMNS, resume_step)
        for logger in (self.steps, self.epochs):
            logger.experiment  # noqa: B018 -- opens (and on resume truncates) the file now
        self.tensorboard = tensorboard_logger(run.out, state.step)

    def on_log_step(self, trainer: TrainerView, row: dict[str, Any]) -> None:
        self._log(self.steps, "step", row)

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        self._log(self.epochs, "epoch", row)

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """A grid (float ``(3, H, W)`` in [0, 1]) as TensorBoard image ``tag`` at ``step``
        (nothing off rank 0 or without tensorboard)."""
        if self.tensorboard is not None:
            self.tensorboard.experiment.add_image(tag, image, global_step=step)
            self.tensorboard.save()

    def on_fit_end(self, trainer: TrainerView, final: dict[str, Any]) -> None:
        """The config as TensorBoard hyperparameters, with the final numbers (``final/*``:
        those of the last epoch's row, not-a-bound cells left out)."""
        if self.tensorboard is None or not final:
            return
        metrics = {f"final/{key}": float(value) for key, value in final.items()
                   if key not in ("epoch", "step") and isinstance(value, int | float)
                   and not isinstance(value, bool)}
        self.tensorboard.log_hyperparams(trainer.run.config.to_dict(), metrics=metrics,
                                         step=int(final.get("step") or 0))
        self.tensorboard.save()

    def _log(self, csv_logger: RunCSVLogger | None, kind: str, row: dict[str, Any]) -> None:
        if csv_logger is None:  # not rank 0
            return
        csv_logger.log_row(row)
        if self.tensorboard is not None:
            self.tensorboard.log_metrics(scalars(kind, row), step=int(row["step"]))
            self.tensorboard.save()

    def on_teardown(self, trainer: TrainerView) -> None:
        for logger in (self.steps, self.epochs, self.tensorboard):
            if logger is not None:
                logger.finalize("success")
        self.steps = self.epochs = self.tensorboard = None


class SampleGrid:
    """``samples/epoch_XXXX.png``: decoder means of ``n`` prior samples, seed ``seed`` (the same
    draws every epoch: comparable across epochs); a conditional sequence model continues the
    first validation sequences. Also TensorBoard image ``samples`` through ``logs``. A stop
    abandons the drawing (``trainer.interruptible``): no PNG is left half-written."""

    def __init__(self, n: int = 64, seed: int = 0, logs: MetricLogs | None = None) -> None:
        self.n, self.seed, self.logs = n, seed, logs

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        run = trainer.run
        if run.fabric.is_global_zero:
            with trainer.interruptible("the sample grid"):
                grid = sample_grid(run.model, n=self.n, seed=self.seed,
                                   context=run.val_images[: self.n])
            save_grid(grid, run.out / "samples" / f"epoch_{state.epoch:04d}.png")
            if self.logs is not None:
                self.logs.log_image("samples", grid, state.step)


class ReconstructionGrid:
    """``reconstructions/epoch_XXXX.png``: the first ``n`` validation examples and their
    reconstructions (the same examples every epoch); also TensorBoard image
    ``reconstructions`` through ``logs``. A stop abandons the drawing, as for
    :class:`SampleGrid`."""

    def __init__(self, n: int = 32, logs: MetricLogs | None = None) -> None:
        self.n, self.logs = n, logs

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        run = trainer.run
        if run.fabric.is_global_zero:
            with trainer.interruptible("the reconstruction grid"):
                grid = reconstruction_grid(run.model, run.val_images[: self.n])
            save_grid(grid, run.out / "reconstructions" / f"epoch_{state.epoch:04d}.png")
            if self.logs is not None:
                self.logs.log_image("reconstructions", grid, state.step)


class CurvePlot:
    """``curves.png`` from ``epochs.csv``, redrawn after the first and the last epoch and
    otherwise at most every :data:`CURVES_EVERY_S` seconds: matplotlib takes 0.1-0.5 s a figure,
    as long as a whole epoch of a small data set on a GPU. (Runs after :class:`MetricLogs`.)"""

    def __init__(self) -> None:
        self._drawn_at: float | None = None

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        run = trainer.run
        if not run.fabric.is_global_zero:
            return
        now = time.monotonic()
        if state.epoch == run.config.epochs or self._drawn_at is None or (
                now - self._drawn_at >= CURVES_EVERY_S):
            plot_curves(run.out / "epochs.csv", run.out / "curves.png")
            self._drawn_at = now


class Checkpointing:
    """``checkpoints/last.ckpt`` (atomic) every epoch, every ``every_n_steps`` steps and when a
    stop is requested; ``checkpoints/epoch_XXXX.ckpt`` copies too if ``keep_epochs``."""

    def __init__(self, every_n_steps: int | None = None, keep_epochs: bool = False) -> None:
        self.every_n_steps, self.keep_epochs = every_n_steps, keep_epochs

    def on_train_batch_end(self, trainer: TrainerView, state: LoopState) -> None:
        if self.every_n_steps and state.step % self.every_n_steps == 0:
            trainer.checkpoint(state)

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        path = trainer.checkpoint(state)
        if self.keep_epochs:
            trainer.checkpoint(state, path.with_name(f"epoch_{state.epoch:04d}.ckpt"))

    def on_stop(self, trainer: TrainerView, state: LoopState, signum: int) -> None:
        path = trainer.checkpoint(state)
        trainer.run.fabric.print(f"received signal {signum}: saved {path} at step "
                                 f"{state.step}; resume with --resume {path}", flush=True)


class ConsoleLog:
    """The console lines (stdout, flushed, so that a log file reads in order): the precision
    line (``--precision auto``'s choice, or how much faster it would be), the head's bound
    notes and the data's scaling (once), where a resumed run continues, and one short line per
    epoch (:func:`epoch_line`) that calls a number -ELBO only where it is a bound."""

    def __init__(self) -> None:
        self._scaling_said = False

    def on_fit_start(self, trainer: TrainerView, state: LoopState) -> None:
        self._scaling_said = False
        run = trainer.run
        say = run.fabric.print
        if run.precision_line is not None:
            say(run.precision_line, flush=True)
        for split, note in (("train", run.bounds.train_note), ("val", run.bounds.val_note)):
            if note is not None:
                say(f"note: the {split} -ELBO of {run.head_label} is {note}", flush=True)
        if run.resumed_from is not None:
            say(f"resumed from {run.resumed_from} at epoch {state.epoch}, step {state.step}",
                flush=True)

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        run = trainer.run
        if not self._scaling_said:  # once: what the numbers are, before the first epoch line
            self._scaling_said = True
            run.fabric.print(f"(nats per {report.example}: summed over its {report.data_dims} "
                             f"dims; data: {report.data_scaling})", flush=True)
        run.fabric.print(epoch_line(row, report, run.config.epochs), flush=True)


def default_callbacks(config: TrainConfig) -> list[Any]:
    """The callbacks a config asks for, in the order they run: signals, progress bar, run
    folder, logs, grids (which add their images to the logs' TensorBoard), curves (after the
    logs), checkpoints, console."""
    callbacks: list[Any] = [StopOnSignal()]
    if config.progress:
        callbacks.append(ProgressBar())
    logs = MetricLogs()
    callbacks += [RunFolder(), logs, SampleGrid(config.num_samples, config.seed, logs),
                  ReconstructionGrid(logs=logs), CurvePlot(),
                  Checkpointing(config.checkpoint_every_n_steps, config.keep_epoch_checkpoints),
                  ConsoleLog()]
    return callbacks


def _num(value: float) -> str:
    """A loss in nats: one decimal from 100 on, else 4 significant digits."""
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"


def epoch_line(row: dict[str, Any], report: ELBOReport, epochs: int) -> str:
    """The console line of an epoch (about 100 characters), e.g. ``epoch 2/10: train -ELBO
    -422.4 (optimistic), val -ELBO -433.0 nats/image = -1.116 bits/dim; sigma 0.1316; 3.2 s``:
    a number is called -ELBO only where it is a bound (else ``train loss``, and the val rate
    ``KL``; the reasons, and the data's scaling, are printed once at the start)."""
    nats = f"nats/{report.example}"
    if row["train_neg_elbo"] == NOT_A_BOUND:
        train = f"train loss {_num(row['train_loss'])}"
    else:
        train = f"train -ELBO {_num(row['train_neg_elbo'])}"
        if str(row.get("train_bound_note") or "").startswith("optimistic"):
            train += " (optimistic)"
    if report.valid_bound:
        val = (f"val -ELBO {_num(cast(float, report.neg_elbo))} {nats} = "
               f"{report.bits_per_dim:.4g} bits/dim")
    else:
        val = f"val KL {_num(report.kl)} {nats} (-ELBO n/a: not a bound)"
    extra = ""
    if row.get("sigma") is not None:
        extra += f"; sigma {row['sigma']:.4g}"
    elif row.get("effective_beta") is not None:
        extra += f"; beta {row['effective_beta']:.3g}"
    if row.get("skipped_steps"):
        extra += f"; {row['skipped_steps']} steps skipped"
    return (f"epoch {row['epoch']}/{epochs}: {train}, {val}{extra}; "
            f"{row['seconds']:.1f} s")
