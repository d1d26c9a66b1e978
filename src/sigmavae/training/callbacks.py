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

``trainer`` is the :class:`~sigmavae.training.Trainer` (``config``, ``out``, ``fabric``,
``model``, ``batches``, ``val_data``, ``bounds``, ``save_checkpoint``, ``request_stop``);
``state`` its :class:`~sigmavae.run.state.LoopState`. Callbacks that write files do so on
rank 0 only; :class:`Checkpointing` calls ``trainer.save_checkpoint`` on every rank (it holds
a barrier). :func:`default_callbacks` is what a config asks for, in the order they run.
"""

from __future__ import annotations

import json
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ..dataset_elbo import NOT_A_BOUND, ELBOReport
from ..run.config import TrainConfig
from ..run.state import LoopState
from .logs import RunCSVLogger, scalars, tensorboard_logger
from .speed_hints import device_description
from .visuals import plot_curves, save_reconstruction_grid, save_sample_grid

if TYPE_CHECKING:
    from .trainer import Trainer

#: Columns of ``steps.csv`` and ``epochs.csv``, in order (nats per example; notes are text).
STEP_COLUMNS = [
    "step", "train_loss", "train_nll", "train_kl", "skipped_steps", "sigma", "effective_beta",
    "train_neg_elbo", "train_bound_note",
]
EPOCH_COLUMNS = [
    "epoch", "step", "train_loss", "train_neg_elbo", "train_nll", "train_kl", "val_neg_elbo",
    "val_nll", "val_kl", "val_bits_per_dim", "sigma", "effective_beta", "skipped_steps",
    "seconds", "val_seconds", "train_bound_note", "val_bound_note",
]
#: Least seconds between two redraws of ``curves.png`` (the last epoch always redraws it).
CURVES_EVERY_S = 30.0


class StopOnSignal:
    """SIGTERM/SIGINT ask the trainer to stop after the current step (the checkpoint callback
    then saves, and ``fit`` returns ``{"interrupted": True, "signal": ..., "step": ...}``; the
    CLI exits with 128 + signal). Previous handlers come back at teardown."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self._previous: dict[int, Any] = {}

    def on_fit_start(self, trainer: Trainer, state: LoopState) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            trainer.request_stop(signum)

        try:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            self.on_teardown(trainer)

    def on_teardown(self, trainer: Trainer) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}


class ProgressBar:
    """A tqdm bar per epoch on rank 0 (loss and effective beta at each logged step)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._close()
        self.bar = tqdm(total=len(trainer.batches), initial=trainer.batches.position,
                        desc=f"epoch {epoch + 1}/{trainer.config.epochs}", leave=False,
                        disable=not trainer.fabric.is_global_zero, dynamic_ncols=True)

    def on_train_batch_end(self, trainer: Trainer, state: LoopState) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if self.bar.n >= self.bar.total:  # before validation starts
                self._close()

    def on_log_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{row['train_loss']:.1f}",
                                 beta=_fmt(row.get("effective_beta")))

    def on_stop(self, trainer: Trainer, state: LoopState, signum: int) -> None:
        self._close()

    def on_teardown(self, trainer: Trainer) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunFolder:
    """``config.json`` when a run starts (not on resume) and ``final.json`` when it ends."""

    def on_fit_start(self, trainer: Trainer, state: LoopState) -> None:
        if trainer.fabric.is_global_zero:
            trainer.out.mkdir(parents=True, exist_ok=True)
            if trainer.resumed_from is None:
                (trainer.out / "config.json").write_text(
                    json.dumps(trainer.config.to_dict(), indent=2))

    def on_fit_end(self, trainer: Trainer, final: dict[str, Any]) -> None:
        if trainer.fabric.is_global_zero and final:
            # what the run's wall time was measured on, with the precision it really ran at
            # (added to the dict fit() returns too, so that it reads as final.json)
            final["ran_on"] = {
                "device": device_description(trainer.fabric.device),
                "processes": trainer.fabric.world_size, "precision": trainer.precision,
                "channels_last": trainer.channels_last, "torch": torch.__version__}
            (trainer.out / "final.json").write_text(json.dumps(final, indent=2))


class MetricLogs:
    """``steps.csv``, ``epochs.csv`` (Fabric CSV loggers) and ``tensorboard/`` (Fabric's
    TensorBoard logger: ``train/*`` per logged step, ``epoch/*`` per epoch), rank 0 only. On
    resume the rows and events after the checkpoint's step are dropped: the resumed run logs
    them again, so the files read as those of an uninterrupted run."""

    def __init__(self) -> None:
        self.steps: RunCSVLogger | None = None
        self.epochs: RunCSVLogger | None = None
        self.tensorboard: Any = None

    def on_fit_start(self, trainer: Trainer, state: LoopState) -> None:
        if not trainer.fabric.is_global_zero:
            return
        resume_step = None if trainer.resumed_from is None else state.step
        self.steps = RunCSVLogger(trainer.out / "steps.csv", STEP_COLUMNS, resume_step)
        self.epochs = RunCSVLogger(trainer.out / "epochs.csv", EPOCH_COLUMNS, resume_step)
        for logger in (self.steps, self.epochs):
            logger.experiment  # noqa: B018 -- opens (and on resume truncates) the file now
        self.tensorboard = tensorboard_logger(trainer.out, state.step)

    def on_log_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self._log(self.steps, "train", row)

    def on_train_epoch_end(self, trainer: Trainer, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        self._log(self.epochs, "epoch", row)

    def _log(self, csv_logger: RunCSVLogger | None, prefix: str, row: dict[str, Any]) -> None:
        if csv_logger is None:  # not rank 0
            return
        csv_logger.log_row(row)
        if self.tensorboard is not None:
            self.tensorboard.log_metrics(scalars(prefix, row), step=int(row["step"]))
            self.tensorboard.save()

    def on_teardown(self, trainer: Trainer) -> None:
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

    def on_train_epoch_end(self, trainer: Trainer, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        if trainer.fabric.is_global_zero:
            path = trainer.out / "samples" / f"epoch_{state.epoch:04d}.png"
            context = trainer.val_data.images[: self.n]
            save_sample_grid(trainer.model, path, n=self.n, seed=self.seed, context=context)


class ReconstructionGrid:
    """``reconstructions/epoch_XXXX.png``: the first ``n`` validation examples and their
    reconstructions (the same examples every epoch)."""

    def __init__(self, n: int = 32) -> None:
        self.n = n

    def on_train_epoch_end(self, trainer: Trainer, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        if trainer.fabric.is_global_zero:
            images = trainer.val_data.images[: min(self.n, len(trainer.val_data))]
            save_reconstruction_grid(
                trainer.model, images,
                trainer.out / "reconstructions" / f"epoch_{state.epoch:04d}.png")


class CurvePlot:
    """``curves.png`` from ``epochs.csv``, redrawn after the first and the last epoch and
    otherwise at most every :data:`CURVES_EVERY_S` seconds: matplotlib takes 0.1-0.5 s a figure,
    as long as a whole epoch of a small data set on a GPU. (Runs after :class:`MetricLogs`.)"""

    def __init__(self) -> None:
        self._drawn_at: float | None = None

    def on_train_epoch_end(self, trainer: Trainer, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        if not trainer.fabric.is_global_zero:
            return
        now = time.monotonic()
        if state.epoch == trainer.config.epochs or self._drawn_at is None or (
                now - self._drawn_at >= CURVES_EVERY_S):
            plot_curves(trainer.out / "epochs.csv", trainer.out / "curves.png")
            self._drawn_at = now


class Checkpointing:
    """``checkpoints/last.ckpt`` (atomic) every epoch, every ``every_n_steps`` steps and when a
    stop is requested; ``checkpoints/epoch_XXXX.ckpt`` copies too if ``keep_epochs``."""

    def __init__(self, every_n_steps: int | None = None, keep_epochs: bool = False) -> None:
        self.every_n_steps, self.keep_epochs = every_n_steps, keep_epochs

    def on_train_batch_end(self, trainer: Trainer, state: LoopState) -> None:
        if self.every_n_steps and state.step % self.every_n_steps == 0:
            trainer.save_checkpoint(state)

    def on_train_epoch_end(self, trainer: Trainer, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        trainer.save_checkpoint(state)
        if self.keep_epochs and trainer.fabric.is_global_zero:
            trainer.train_state(state).save(
                trainer.checkpoint_path.with_name(f"epoch_{state.epoch:04d}.ckpt"))

    def on_stop(self, trainer: Trainer, state: LoopState, signum: int) -> None:
        path = trainer.save_checkpoint(state)
        trainer.fabric.print(f"received signal {signum}: saved {path} at step {state.step}; "
                             f"resume with --resume {path}")


class ConsoleLog:
    """The console lines: the precision line (``--precision auto``'s choice, or how much faster
    it would be), the head's bound notes (once), where a resumed run continues, and
    one line per epoch that calls a number -ELBO only where it is a bound."""

    def on_fit_start(self, trainer: Trainer, state: LoopState) -> None:
        if trainer.fabric.is_global_zero and trainer.resumed_from is None:
            line = trainer.precision_line()
            if line is not None:
                trainer.fabric.print(line)
        notes = (("train", trainer.bounds.train_note), ("val", trainer.bounds.val_note))
        for split, note in notes:
            if note is not None:
                trainer.fabric.print(f"note: the {split} -ELBO of {trainer.head_label} is {note}")
        if trainer.resumed_from is not None:
            trainer.fabric.print(f"resumed from {trainer.resumed_from} at epoch {state.epoch}, "
                                 f"step {state.step}")

    def on_train_epoch_end(self, trainer: Trainer, state: LoopState, row: dict[str, Any],
                           report: ELBOReport) -> None:
        trainer.fabric.print(epoch_line(row, report, trainer.head_label))


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
