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
``on_train_epoch_end``    ``(trainer, state, row, report)``: after validation; ``row`` is the
                          ``epochs.csv`` row, ``report`` the validation
                          :class:`~sigmavae.dataset_elbo.ELBOReport`
``on_stop``               ``(trainer, state, signum)``: a stop was requested (a signal);
                          the run returns after this hook
``on_fit_end``            ``(trainer, final)``: the last epoch's metrics (not after a stop)
``on_teardown``           ``(trainer)``: always, last, also after an error
========================= =====================================================================

``state`` is the loop's :class:`~sigmavae.run.state.LoopState` (``epoch``, ``step``,
``skipped``). ``trainer`` is the :class:`~sigmavae.training.Trainer`, of which a callback uses
what :class:`TrainerView` lists: it reads what the run is from ``trainer.run`` (a read-only
:class:`RunInfo`, set before ``on_fit_start``) and acts through two methods:
``trainer.request_stop(signum)`` (stop after the current step) and
``trainer.checkpoint(state, path=None)`` (write the run's state; call it on every rank, it
holds a barrier). Callbacks that write files do so on rank 0 only. :func:`default_callbacks`
is what a config asks for, in the order they run.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch
from lightning_fabric import Fabric
from torch import nn
from tqdm.auto import tqdm

from ..data import InMemoryBatches
from ..dataset_elbo import NOT_A_BOUND, ELBOReport
from ..run.config import TrainConfig
from ..run.state import LoopState
from .logs import RunCSVLogger, scalars, tensorboard_logger
from .rows import EPOCH_COLUMNS, STEP_COLUMNS, BoundNotes
from .speed_hints import device_description
from .visuals import plot_curves, save_reconstruction_grid, save_sample_grid

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


class StopOnSignal:
    """SIGTERM/SIGINT ask the trainer to stop after the current step (the checkpoint callback
    then saves, and ``fit`` returns ``{"interrupted": True, "signal": ..., "step": ...}``; the
    CLI exits with 128 + signal). Previous handlers come back at teardown."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self._previous: dict[int, Any] = {}

    def on_fit_start(self, trainer: TrainerView, state: LoopState) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            trainer.request_stop(signum)

        try:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            self.on_teardown(trainer)

    def on_teardown(self, trainer: TrainerView) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}


class ProgressBar:
    """A tqdm bar per epoch on rank 0 (loss and effective beta at each logged step)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        self._close()
        run = trainer.run
        self.bar = tqdm(total=len(run.batches), initial=run.batches.position,
                        desc=f"epoch {epoch + 1}/{run.config.epochs}", leave=False,
                        disable=not run.fabric.is_global_zero, dynamic_ncols=True)

    def on_train_batch_end(self, trainer: TrainerView, state: LoopState) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if self.bar.n >= self.bar.total:  # before validation starts
                self._close()

    def on_log_step(self, trainer: TrainerView, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{row['train_loss']:.1f}",
                                 beta=_fmt(row.get("effective_beta")))

    def on_stop(self, trainer: TrainerView, state: LoopState, signum: int) -> None:
        self._close()

    def on_teardown(self, trainer: TrainerView) -> None:
        self._close()

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
    and rows: :mod:`.rows`) and ``tensorboard/`` (Fabric's
    TensorBoard logger: ``train/*`` per logged step, ``epoch/*`` per epoch), rank 0 only. On
    resume the rows and events after the checkpoint's step are dropped: the resumed run logs
    them again, so the files read as those of an uninterrupted run."""

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
        self._log(self.steps, "train", row)

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        self._log(self.epochs, "epoch", row)

    def _log(self, csv_logger: RunCSVLogger | None, prefix: str, row: dict[str, Any]) -> None:
        if csv_logger is None:  # not rank 0
            return
        csv_logger.log_row(row)
        if self.tensorboard is not None:
            self.tensorboard.log_metrics(scalars(prefix, row), step=int(row["step"]))
            self.tensorboard.save()

    def on_teardown(self, trainer: TrainerView) -> None:
        for logger in (self.steps, self.epochs, self.tensorboard):
            if logger is not None:
                logger.finalize("success")
        self.steps = self.epochs = self.tensorboard = None


class SampleGrid:
    """``samples/epoch_XXXX.png``: decoder means of ``n`` prior samples, seed ``seed`` (the same
    draws every epoch: comparable across epochs); a conditional sequence model continues the
    first validation sequences."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        run = trainer.run
        if run.fabric.is_global_zero:
            path = run.out / "samples" / f"epoch_{state.epoch:04d}.png"
            context = run.val_images[: self.n]
            save_sample_grid(run.model, path, n=self.n, seed=self.seed, context=context)


class ReconstructionGrid:
    """``reconstructions/epoch_XXXX.png``: the first ``n`` validation examples and their
    reconstructions (the same examples every epoch)."""

    def __init__(self, n: int = 32) -> None:
        self.n = n

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        run = trainer.run
        if run.fabric.is_global_zero:
            save_reconstruction_grid(
                run.model, run.val_images[: self.n],
                run.out / "reconstructions" / f"epoch_{state.epoch:04d}.png")


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
                                 f"{state.step}; resume with --resume {path}")


class ConsoleLog:
    """The console lines: the precision line (``--precision auto``'s choice, or how much faster
    it would be), the head's bound notes (once), where a resumed run continues, and
    one line per epoch that calls a number -ELBO only where it is a bound."""

    def on_fit_start(self, trainer: TrainerView, state: LoopState) -> None:
        run = trainer.run
        if run.precision_line is not None:
            run.fabric.print(run.precision_line)
        for split, note in (("train", run.bounds.train_note), ("val", run.bounds.val_note)):
            if note is not None:
                run.fabric.print(f"note: the {split} -ELBO of {run.head_label} is {note}")
        if run.resumed_from is not None:
            run.fabric.print(f"resumed from {run.resumed_from} at epoch {state.epoch}, "
                             f"step {state.step}")

    def on_train_epoch_end(self, trainer: TrainerView, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        trainer.run.fabric.print(epoch_line(row, report, trainer.run.head_label))


def default_callbacks(config: TrainConfig) -> list[Any]:
    """The callbacks a config asks for, in the order they run: signals, progress bar, run
    folder, logs, grids, curves (after the logs), checkpoints, console."""
    callbacks: list[Any] = [StopOnSignal()]
    if config.progress:
        callbacks.append(ProgressBar())
    callbacks += [RunFolder(), MetricLogs(), SampleGrid(config.num_samples, config.seed),
                  ReconstructionGrid(), CurvePlot(),
                  Checkpointing(config.checkpoint_every_n_steps, config.keep_epoch_checkpoints),
                  ConsoleLog()]
    return callbacks


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def epoch_line(row: dict[str, Any], report: ELBOReport, likelihood: str) -> str:
    """The console line of an epoch: a number is called -ELBO only where it is a bound (the
    full reasons are printed once, at the start of the run)."""
    note = row.get("train_bound_note")
    nats = f"nats/{report.example}"
    if row["train_neg_elbo"] == NOT_A_BOUND:
        train = (f"train loss {row['train_loss']:.2f} {nats} (-ELBO n/a: not a bound for "
                 f"{likelihood}, see the note above)")
    else:
        train = f"train -ELBO {row['train_neg_elbo']:.2f} {nats}"
        if note:
            train += f" ({note.split(' (')[0]})"
    if report.valid_bound:
        val = report.summary()
    else:
        val = (f"-ELBO n/a (not a bound for {likelihood}, see the note above); rate kl "
               f"{report.kl:.2f} {nats}")
    return f"epoch {row['epoch']}: {train}; val {val}"
