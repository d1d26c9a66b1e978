"""The training loop, on Lightning Fabric.

Fabric owns devices, processes (DDP over torch.distributed, torchrun/SLURM detection, multi-node),
precision/autocast, seeding and the callback calls; this module states what one step computes
and owns what a generic loop gets wrong for this project: in-memory uint8 batches sharded exactly
like one big batch, a non-finite guard, and a checkpoint (:class:`TrainState`) that resumes a run
exactly, mid-epoch too. Everything around the steps (logs, grids, curves, checkpoints on a
schedule, signals, console lines) is a callback (:mod:`sigmavae.training.callbacks`).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from lightning_fabric import Fabric
from torch import nn

from .. import objective, streams
from ..data import InMemoryBatches
from ..dataset_elbo import NOT_A_BOUND, ELBOReport, elbo_sums, report_from_sums
from ..likelihoods import LikelihoodHead
from ..messages import first_line
from ..run.allocator import tune_cpu_allocator
from ..run.build import Examples, as_examples, build_vae, data_shape, load_splits
from ..run.checkpoint import CheckpointError
from ..run.config import ConfigError, TrainConfig
from ..run.state import RESUME_KEYS, LoopState, TrainState
from .callbacks import EPOCH_COLUMNS, STEP_COLUMNS, default_callbacks
from .fastpath import fast_path, resolve_precision, training_device
from .optim import build_adam
from .speed_hints import speedup

__all__ = ["EPOCH_COLUMNS", "RESUME_KEYS", "STEP_COLUMNS", "BoundNotes", "NonFiniteLossError",
           "Trainer", "build_vae", "load_splits"]

#: A ready model, or a function of the data shape (one example's, e.g. ``(C, H, W)``) making one.
ModelSpec = nn.Module | Callable[[tuple[int, ...]], nn.Module]


@dataclass(frozen=True)
class BoundNotes:
    """What the head says of a run's train and val -ELBO: whether each is a bound (``*_reason``
    is the head's reason where it is not) and, for a valid train bound, its bias note
    (optimal sigma fits sigma to the batch itself: optimistic)."""

    train_valid: bool
    train_reason: str | None
    train_bias: str | None
    val_valid: bool
    val_reason: str | None

    @classmethod
    def of(cls, head: LikelihoodHead, train_images: torch.Tensor,
           val_images: torch.Tensor) -> BoundNotes:
        return cls(*head.bound_validity(train_images), head.train_bound_bias,
                   *head.bound_validity(val_images))

    @property
    def train_note(self) -> str | None:
        """The ``train_bound_note`` column: the bias note, or why it is no bound."""
        return self.train_bias if self.train_valid else f"not a bound: {self.train_reason}"

    @property
    def val_note(self) -> str | None:
        """The ``val_bound_note`` column: ``None``, or why it is no bound."""
        return None if self.val_valid else f"not a bound: {self.val_reason}"

    def train_columns(self, nll: float, kl: float) -> dict[str, Any]:
        return {"train_neg_elbo": nll + kl if self.train_valid else NOT_A_BOUND,
                "train_bound_note": self.train_note}


class NonFiniteLossError(RuntimeError):
    """Training produced too many consecutive non-finite losses or gradients."""


class Trainer:
    """Train a model described by a :class:`TrainConfig` (or given ready) on in-memory data.

    Args:
        config: the run's settings.
        train_data, val_data: the splits (an :class:`~sigmavae.data.ImageDataset`, anything with
            a uint8 ``images`` tensor ``(N, *data_shape)``, or such a tensor: images
            ``(N, C, H, W)`` or sequences ``(N, T, C, H, W)``); default: ``config``'s data set.
        model: a ready model following the model protocol (``head``, ``latent_dim``,
            ``data_shape``, ``forward(x, noise)``; see :mod:`sigmavae.objective`), or a function
            of the data shape that makes one; default: ``config``'s model and likelihood.
        callbacks: run after the config's :func:`~sigmavae.training.callbacks.default_callbacks`
            (see that module for the hooks).

    Outputs in ``config.out``: ``checkpoints/last.ckpt`` (atomic, every epoch and every
    ``checkpoint_every_n_steps``), ``epochs.csv`` and ``steps.csv`` (metrics, nats per example),
    ``tensorboard/``, ``samples/epoch_XXXX.png`` (prior samples, decoder means),
    ``reconstructions/epoch_XXXX.png``, ``curves.png``, ``config.json``, ``final.json``.
    """

    def __init__(self, config: TrainConfig, train_data: Examples | torch.Tensor | None = None,
                 val_data: Examples | torch.Tensor | None = None, *,
                 model: ModelSpec | None = None, callbacks: Sequence[Any] = ()) -> None:
        self.config = config
        self._data = (train_data, val_data)
        self._model_spec = model
        self._extra_callbacks = list(callbacks)
        self.out = Path(config.out)
        self.checkpoint_path = self.out / "checkpoints" / "last.ckpt"
        self.resumed_from: Path | None = None
        self._stop_signal: int | None = None
        self._grad_scaler: torch.amp.GradScaler | None = None

    @property
    def stop_signal(self) -> int | None:
        """The signal that asked the run to stop, or ``None``."""
        return self._stop_signal

    def request_stop(self, signum: int) -> None:
        """Stop after the current step: checkpoint, then return from :meth:`fit`."""
        self._stop_signal = signum

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, resume: str | Path | None = None) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs; ``resume`` a checkpoint path or ``"auto"``
        (``out/checkpoints/last.ckpt`` if it exists). Returns the final metrics, or
        ``{"interrupted": True, "signal": ..., "step": ...}`` after a stop."""
        state = self._setup(resume)
        fabric = self.fabric
        try:
            fabric.call("on_fit_start", trainer=self, state=state)
            fabric.barrier()
            final: dict[str, Any] = {}
            for epoch in range(state.epoch, self.config.epochs):
                if self._train_epoch(epoch, state):
                    fabric.call("on_stop", trainer=self, state=state, signum=self._stop_signal)
                    return {"interrupted": True, "signal": self._stop_signal, "step": state.step}
                val_started = time.perf_counter()
                report = self._validate()
                row = self._epoch_metrics(epoch, state, report,
                                          val_seconds=time.perf_counter() - val_started)
                state.epoch = epoch + 1
                state.reset_epoch_sums()
                fabric.call("on_train_epoch_end", trainer=self, state=state, row=row,
                            report=report)
                final = {**row, "val_report": report.as_dict()}
            if not final and state.epoch > 0:  # a finished run resumed (killed before its end)
                final = self._final_of_finished_run()
            fabric.call("on_fit_end", trainer=self, final=final)
            return final
        finally:
            fabric.call("on_teardown", trainer=self)

    def _train_epoch(self, epoch: int, state: LoopState) -> bool:
        """The steps left in ``epoch``; ``True`` if a stop was requested."""
        c, fabric = self.config, self.fabric
        self.batches.set_epoch(epoch)
        self.model.train()
        fabric.call("on_train_epoch_start", trainer=self, epoch=epoch)
        self._epoch_started = time.perf_counter()
        if self.batches.position >= len(self.batches):
            # resumed from a checkpoint taken after the epoch's last step, before its
            # validation: validate this epoch (iterating would start the next one)
            return False
        for images in self.batches:
            self._train_step(self.wrapped, self.optimizer, images, state)
            fabric.call("on_train_batch_end", trainer=self, state=state)
            if state.step % c.log_every_n_steps == 0:
                fabric.call("on_log_step", trainer=self, row=self._step_metrics(state))
            if self._stop_signal is not None:
                return True
        return False

    # -- setup ------------------------------------------------------------------------------------
    def _make_fabric(self) -> Fabric:
        c = self.config
        world = c.devices * c.num_nodes
        strategy = "ddp" if world > 1 else "auto"
        # --precision auto: what measured fastest for the device (training.fastpath)
        self.precision, self.channels_last = resolve_precision(
            c.precision, c.channels_last, training_device(c.accelerator))
        return Fabric(accelerator=c.accelerator, devices=c.devices, num_nodes=c.num_nodes,
                      strategy=strategy, precision=cast(Any, self.precision),
                      callbacks=[*default_callbacks(c), *self._extra_callbacks])

    def _setup(self, resume: str | Path | None) -> LoopState:
        """Processes, data, model, optimiser, batches; the loop state (restored on resume).
        Writes nothing: a run that cannot start leaves no folder behind."""
        c = self.config
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"config: out {self.out} exists and is not a folder; expected the "
                              "run's output folder")
        fabric = self.fabric = self._make_fabric()
        fabric.launch()
        # The loss scaler of 16-mixed (None at other precisions).
        self._grad_scaler = getattr(fabric.strategy.precision, "scaler", None)
        if c.tune_malloc and fabric.device.type == "cpu":
            tune_cpu_allocator()
        fabric.seed_everything(c.seed, verbose=False)
        train, val = self._data
        if train is None or val is None:
            train, val = load_splits(c)
        self.train_data, self.val_data = as_examples(train, "train_data"), as_examples(val,
                                                                                      "val_data")
        self._check_batch_size(self.train_data)
        self.data_shape = data_shape(self.train_data)
        model = self.model = self._build_model()
        # The same module, typed as the model protocol it follows (for the objective's calls).
        self._vae = cast(objective.Model, model)
        head = self._vae.head
        self.head_label = getattr(head, "name", "") or c.likelihood
        self.bounds = BoundNotes.of(head, self.train_data.images, self.val_data.images)
        # Batches are sliced from uint8 tensors, valid by construction: no per-step data check
        # (it would also put a data-dependent branch into a compiled graph).
        head.validate_args = False
        self.noise_rng = streams.generator(c.seed, "train_noise")
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # With 16-mixed's loss scaler the gradients are unscaled before clipping; Fabric refuses
        # that for fused Adam (which would unscale inside its kernel), so the scaler gets the
        # default Adam.
        optimizer = build_adam(model.parameters(), lr=c.lr,
                               fused=c.fused_adam and self._grad_scaler is None)
        # `self.model` stays the plain module (state_dict keys, sampling); `wrapped` trains.
        # --compile: one process compiles the whole loss (network, head, KL) into one graph;
        # under DDP Fabric compiles the wrapped network (its supported way) and the head and
        # loss run eagerly.
        whole_step = c.compile and fabric.world_size == 1
        # (torch.compile of a module returns a module, its stubs say only a callable)
        self.wrapped, self.optimizer = fabric.setup(
            cast(nn.Module, torch.compile(model, mode=c.compile_mode))
            if c.compile and not whole_step else model, optimizer)
        self._objective = objective.OBJECTIVES.get(c.objective)  # resolved once, not per step
        self._loss_terms = (torch.compile(self._terms, mode=c.compile_mode) if whole_step
                            else self._terms)
        self.batches = InMemoryBatches(
            self.train_data.images, c.batch_size, shuffle=True, drop_last=c.drop_last,
            seed=c.seed, device=fabric.device if c.data_on_device else None,
            rank=fabric.global_rank, world_size=fabric.world_size)
        state = LoopState(fabric.device)
        if resume == "auto":
            resume = self.checkpoint_path if self.checkpoint_path.is_file() else None
        if resume is not None:
            state = self._restore(Path(resume))
        return state

    def _build_model(self) -> nn.Module:
        spec, shape = self._model_spec, self.data_shape
        if spec is None:
            return build_vae(self.config, shape)
        model = spec if isinstance(spec, nn.Module) else spec(shape)
        found = tuple(getattr(model, "data_shape", ()))
        if found != shape:
            raise ConfigError(f"model: its data_shape is {found}, the data's examples are {shape}")
        return model

    def _check_batch_size(self, train: Examples) -> None:
        global_batch = self.config.batch_size * self.fabric.world_size
        if global_batch > len(train):
            raise ConfigError(
                f"batch_size {self.config.batch_size} x {self.fabric.world_size} process(es) = "
                f"{global_batch} is larger than the training set ({len(train)} images of "
                f"{train.name}); lower --batch-size")

    # -- one step ---------------------------------------------------------------------------------
    def _train_step(self, wrapped: Any, optimizer: Any, images: torch.Tensor,
                    state: LoopState) -> None:
        """One update: loss through the objective, backward, clip, skip if non-finite."""
        c = self.config
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        loss, nll, kl = self._loss_terms(images, self._noise(images.shape[0]))
        self.fabric.backward(loss)
        max_norm = c.grad_clip if c.grad_clip is not None else math.inf
        # Through Fabric, so that with 16-mixed the gradients are unscaled before the norm and
        # the clipping; the norm is that of the true gradients at every precision.
        # (a tensor, given max_norm; None only for clip_val)
        grad_norm = cast(torch.Tensor, self.fabric.clip_gradients(
            wrapped, optimizer, max_norm=max_norm, error_if_nonfinite=False))
        # One host-device synchronisation per step (the skip decision needs it).
        finite = bool(torch.isfinite(grad_norm) & torch.isfinite(loss.detach()))
        if finite:
            optimizer.step()
            state.nonfinite_in_a_row = 0
            state.add(loss, nll, kl)
        else:
            if self._grad_scaler is not None:
                # 16-mixed: an fp16 gradient overflow is routine; lower the loss scale (and clear
                # the per-step record the unscaling made) as the scaler's own step would.
                self._grad_scaler.update()
            state.skipped += 1
            state.nonfinite_in_a_row += 1
            if state.nonfinite_in_a_row >= c.max_nonfinite_steps:
                raise NonFiniteLossError(self._nonfinite_message(state))
        optimizer.zero_grad(set_to_none=True)
        state.step += 1

    def _terms(self, images: torch.Tensor,
               noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step's loss (scalar), nll and kl ``(B,)`` nats, through the objective (run by
        the Fabric-wrapped module, so that DDP synchronises the gradients)."""
        terms = self._objective.terms(self._vae, images, beta=self.config.kl_weight,
                                      noise=noise, forward=self.wrapped)
        return terms.loss, terms.nll, terms.kl

    def _noise(self, local_batch: int) -> torch.Tensor:
        """This rank's slice of the global batch's reparameterisation noise ``(B, latent_dim)``
        (drawn on the CPU from one seeded generator on every rank), so results do not depend on
        the process count."""
        world, rank = self.fabric.world_size, self.fabric.global_rank
        noise = torch.randn(local_batch * world, self._vae.latent_dim, generator=self.noise_rng)
        return noise[rank * local_batch:(rank + 1) * local_batch].to(self.fabric.device)

    def _nonfinite_message(self, state: LoopState) -> str:
        c = self.config
        hint = self._vae.head.divergence_hint()  # the head knows its own failure modes
        if hint is None:
            hint = (f"a learning rate too high ({c.lr})" if c.lr > 1e-3
                    else "a diverging decoder variance")
        last = self.checkpoint_path
        where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint yet"
        return (f"{state.nonfinite_in_a_row} consecutive steps had a non-finite loss or gradient "
                f"(step {state.step}); likely cause: {hint}; {where}")

    # -- metrics ----------------------------------------------------------------------------------
    def _step_metrics(self, state: LoopState) -> dict[str, Any]:
        """The ``steps.csv`` row of the window since the last one (all-reduced)."""
        sums = self.fabric.all_reduce(state.window.clone(), reduce_op="sum")
        n = max(float(sums[3]), 1.0)
        row: dict[str, Any] = {"step": state.step, "train_loss": float(sums[0]) / n,
               "train_nll": float(sums[1]) / n, "train_kl": float(sums[2]) / n,
               "skipped_steps": state.skipped, **self._sigma_columns()}
        row.update(self.bounds.train_columns(row["train_nll"], row["train_kl"]))
        state.window.zero_()
        return row

    def _validate(self) -> ELBOReport:
        c = self.config
        sums = elbo_sums(self._vae, self.val_data.images,
                         batch_size=c.val_batch_size or c.batch_size,
                         seed=streams.stream_seed(c.seed, "validation_elbo"),
                         shard=(self.fabric.global_rank, self.fabric.world_size))
        sums = cast(torch.Tensor, self.fabric.all_reduce(sums.to(self.fabric.device),
                                                          reduce_op="sum")).cpu()
        return report_from_sums(self._vae, sums,
                                validity=(self.bounds.val_valid, self.bounds.val_reason))

    def _epoch_metrics(self, epoch: int, state: LoopState, report: ELBOReport,
                       val_seconds: float) -> dict[str, Any]:
        """The ``epochs.csv`` row (all-reduced training sums, the validation report; wall
        seconds of the epoch's steps and validation, and of the validation alone)."""
        sums = self.fabric.all_reduce(state.epoch_sums.clone(), reduce_op="sum")
        n = max(float(sums[3]), 1.0)
        valid = report.valid_bound
        row: dict[str, Any] = {
            "epoch": epoch + 1, "step": state.step, "train_loss": float(sums[0]) / n,
            "train_nll": float(sums[1]) / n, "train_kl": float(sums[2]) / n,
            "val_nll": report.nll if valid else NOT_A_BOUND, "val_kl": report.kl,
            "val_neg_elbo": report.neg_elbo if valid else NOT_A_BOUND,
            "val_bits_per_dim": report.bits_per_dim if valid else NOT_A_BOUND,
            "skipped_steps": state.skipped,
            "seconds": round(time.perf_counter() - self._epoch_started, 3),
            "val_seconds": round(val_seconds, 3),
            **self._sigma_columns(), "val_bound_note": self.bounds.val_note,
        }
        row.update(self.bounds.train_columns(row["train_nll"], row["train_kl"]))
        return row

    def _final_of_finished_run(self) -> dict[str, Any]:
        """The final metrics of a run whose training had finished: its last ``epochs.csv`` row
        and the validation report again (the same numbers: the validation noise is seeded)."""
        path = self.out / "epochs.csv"
        rows = list(csv.DictReader(path.open(newline=""))) if path.is_file() else []
        if not rows:
            return {}
        row = {key: _csv_value(value) for key, value in rows[-1].items()}
        return {**row, "val_report": self._validate().as_dict()}

    def _sigma_columns(self) -> dict[str, float | None]:
        sigma, beta = self._vae.head.sigma, self._vae.head.effective_beta
        return {"sigma": None if sigma is None else float(sigma),
                "effective_beta": None if beta is None else float(beta)}

    def precision_line(self) -> str | None:
        """The start-of-run line on precision: what ``auto`` chose, or, for a ``32-true`` run on
        a device with a faster path (``speed_hint``), how much faster ``auto`` ran a step of this
        model on a training batch (timed on a copy, once per machine, model and batch shape:
        :mod:`.speed_hints`; ``None`` if it was not faster)."""
        c, device = self.config, self.fabric.device
        path = fast_path(device)
        if c.precision == "auto":
            if path is None:
                return f"precision auto: 32-true (float32 is fastest on this {device.type})"
            return f"precision auto: {path.label} ({path.reason})"
        if c.precision != "32-true" or not c.speed_hint or path is None:
            return None
        measured = speedup(self.model, self.train_data.images[:c.batch_size], path, device)
        if measured.factor <= 1.05:
            return None
        when = ("timed on a copy at the start" if measured.measured_now
                else "timed on an earlier start")
        return (f"note: --precision auto ({path.label}) ran a training step of this model "
                f"{measured.factor:.1f}x as fast as 32-true on this machine ({when}; "
                f"remembered in {measured.store}); the default stays 32-true")

    # -- checkpoints ------------------------------------------------------------------------------
    def train_state(self, state: LoopState) -> TrainState:
        """Everything an exact resume needs, as a :class:`TrainState`."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(),
                               "noise": self.noise_rng.get_state()}
        if torch.cuda.is_available() and self.fabric.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.fabric.device)
        return TrainState(
            model=self.model.state_dict(), config=self.config.to_dict(),
            data_shape=list(self.data_shape), optimizer=self.optimizer.state_dict(),
            batches=self.batches.state_dict(), loop=state.state_dict(),
            precision=self.fabric.strategy.precision.state_dict(),  # 16-mixed: loss scale
            rng=rng)

    def save_checkpoint(self, state: LoopState, path: Path | None = None) -> Path:
        """Write the run's state atomically (rank 0; every rank waits): ``last.ckpt`` by
        default. Call on every rank."""
        path = path or self.checkpoint_path
        if self.fabric.is_global_zero:
            self.train_state(state).save(path)
        self.fabric.barrier()
        return path

    def _restore(self, path: Path) -> LoopState:
        saved = TrainState.load(path)
        missing = saved.missing_for_resume()
        if missing:
            raise CheckpointError(f"cannot resume from {path}: it has no {', '.join(missing)} "
                                  "(a checkpoint for evaluation only?); start a new run instead")
        if list(saved.data_shape) != list(self.data_shape):
            raise CheckpointError(f"cannot resume from {path}: it is for examples of shape "
                                  f"{saved.data_shape}, the data has {list(self.data_shape)}")
        device = self.fabric.device
        rng: dict[str, Any] = saved.rng or {}
        try:
            self.model.load_state_dict(saved.model)
            self.optimizer.load_state_dict(saved.optimizer)
            self.batches.load_state_dict(saved.batches or {})
            if saved.precision:
                self.fabric.strategy.precision.load_state_dict(saved.precision)
            torch.set_rng_state(rng["torch"])
            self.noise_rng.set_state(rng["noise"])
            if "cuda" in rng and device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], device)
            state = LoopState(device)
            state.load_state_dict(saved.loop or {})
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"cannot resume from {path}: it does not fit this run's "
                                  f"config ({first_line(err)}); resume with the config it was "
                                  "trained with, or start a new run") from None
        self.resumed_from = path
        return state


def _csv_value(cell: str) -> Any:
    """A CSV cell as the value it was written from: int, float, None (empty) or the text."""
    if cell == "":
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell
