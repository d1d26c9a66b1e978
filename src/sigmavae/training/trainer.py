"""The training loop, on Lightning Fabric, in the shape of Fabric's "build your own trainer"
example: ``fit`` -> epochs (:meth:`Trainer.fit_loop`, :meth:`Trainer.val_loop`) -> steps
(:meth:`Trainer.training_step`), with a hook at each turn.

Fabric owns devices, processes (DDP, torchrun/SLURM detection, multi-node), precision/autocast,
seeding and the callback calls; the loop owns what a generic one gets wrong here: in-memory uint8
batches and noise sharded exactly like one big batch, and a non-finite guard. A run's state and
its exact resume are :mod:`sigmavae.run.state`, the metric rows :mod:`.rows`, everything around
the steps (logs, grids, curves, checkpoints, signals, console) :mod:`.callbacks`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from .. import objective, streams
from ..data import InMemoryBatches
from ..dataset_elbo import ELBOReport, elbo_sums, report_from_sums
from ..run.allocator import tune_cpu_allocator
from ..run.build import Examples
from ..run.config import ConfigError, TrainConfig
from ..run.state import LoopState, Resumable, TrainState, restore
from ..run.stopping import StopRequested, StopSignals
from .callbacks import RunInfo, default_callbacks
from .logs import last_row
from .optim import build_adam
from .rows import BoundNotes, epoch_row, step_row
from .setup import ModelSpec, RunFolderGuard, load_examples, make_fabric, make_model
from .speed_hints import precision_line

__all__ = ["NonFiniteLossError", "Trainer"]


class NonFiniteLossError(RuntimeError):
    """Training produced too many consecutive non-finite losses or gradients."""


class Trainer:
    """Train a model described by a :class:`TrainConfig` (or given ready) on in-memory data.

    Args:
        config: the run's settings.
        train_data: the training split (an :class:`~sigmavae.data.ImageDataset`, anything
            with a uint8 ``images`` tensor ``(N, *data_shape)``, or such a tensor: images
            ``(N, C, H, W)`` or sequences ``(N, T, C, H, W)``); default: ``config``'s data set.
        val_data: the validation split, the same kinds.
        model: a ready model following the model protocol (``head``, ``latent_dim``,
            ``data_shape``, ``forward(x, noise)``; see :mod:`sigmavae.objective`), or a function
            of the data shape that makes one; default: ``config``'s model and likelihood.
        callbacks: run after the config's :func:`~sigmavae.training.callbacks.default_callbacks`
            (see that module for the hooks).
        overwrite: replace the run ``config.out`` holds, if any (its outputs are removed when
            the run starts). Without it a folder holding a run is refused
            (:class:`~sigmavae.run.RunExistsError`) unless ``fit`` resumes it; a folder another
            process trains in always is (:class:`~sigmavae.run.RunLockedError`).

    Once :meth:`fit` has set up: ``fabric``, ``model`` (the plain module; ``wrapped`` is the
    one Fabric trains), ``optimizer``, ``batches``, ``train_data``, ``val_data``,
    ``data_shape``, ``precision``, ``channels_last`` and ``run`` (what callbacks read, a
    :class:`~sigmavae.training.callbacks.RunInfo`).

    Library use changes nothing outside the run unless the config asks: ``tune_malloc`` and
    ``speed_hint`` left null are off (``sigmavae train`` turns them on:
    :meth:`TrainConfig.with_command_defaults`). SIGTERM/SIGINT stop the run within seconds
    (:class:`~sigmavae.training.callbacks.StopOnSignal`, :meth:`interruptible`).

    Outputs in ``config.out`` (by the callbacks): ``checkpoints/last.ckpt``, ``epochs.csv``,
    ``steps.csv``, ``tensorboard/``, ``samples/``, ``reconstructions/``, ``curves.png``,
    ``config.json``, ``final.json`` (see ``docs/training.md``).
    """

    def __init__(self, config: TrainConfig, train_data: Examples | torch.Tensor | None = None,
                 val_data: Examples | torch.Tensor | None = None, *,
                 model: ModelSpec | None = None, callbacks: Sequence[Any] = (),
                 overwrite: bool = False) -> None:
        self.config = config
        self._data = (train_data, val_data)
        self._model_spec = model
        self._extra_callbacks = list(callbacks)
        self._folder = RunFolderGuard(Path(config.out), overwrite)  # refusal, lock, overwrite
        self.out = Path(config.out)
        self.checkpoint_path = self.out / "checkpoints" / "last.ckpt"
        self.resumed_from: Path | None = None
        self._stops = StopSignals()  # what was asked; which work may be abandoned

    @property
    def stop_signal(self) -> int | None:
        """The signal that asked the run to stop, or ``None``."""
        return self._stops.requested

    def request_stop(self, signum: int) -> None:
        """Stop: after the current training step, or at once inside :meth:`interruptible`
        work (validation, the grids); then checkpoint and return from :meth:`fit`."""
        self._stops.request(signum)

    def interruptible(self, phase: str) -> contextlib.AbstractContextManager[None]:
        """A block (validation, a sample grid: work that changes nothing a checkpoint holds)
        that a stop abandons at once: :meth:`request_stop`, called in it (by the signal
        handler, between two bytecodes), raises :class:`~sigmavae.run.stopping.StopRequested`,
        which :meth:`fit` handles as a stop after the last step. With several processes the
        block runs to its end (an abandoned block would leave the other ranks waiting in its
        all-reduce); the ranks then stop together."""
        if self.fabric.world_size > 1:
            return contextlib.nullcontext()
        return self._stops.interruptible(phase)

    def checkpoint(self, state: LoopState, path: Path | None = None) -> Path:
        """Write the run's state (:meth:`TrainState.capture`) atomically to ``path`` (default
        ``last.ckpt``) on rank 0; every rank waits. Call on every rank."""
        path = path or self.checkpoint_path
        if self.fabric.is_global_zero:
            TrainState.capture(self._resumable, state).save(path)
        self.fabric.barrier()
        return path

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, resume: str | Path | None = None) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs; ``resume`` a checkpoint path or ``"auto"``
        (``out/checkpoints/last.ckpt`` if it exists). Returns the final metrics, or
        ``{"interrupted": True, "signal": ..., "step": ...}`` after a stop."""
        state = self.setup(resume)
        fabric, call = self.fabric, self.fabric.call
        try:
            call("on_fit_start", trainer=self, state=state)
            fabric.barrier()
            final: dict[str, Any] = {}
            for epoch in range(state.epoch, self.config.epochs):
                started = time.perf_counter()
                if self.fit_loop(epoch, state):
                    return self._stopped(state)
                try:
                    final = self.end_epoch(epoch, state, started)
                except StopRequested:  # in validation or a grid: the state of the last step
                    return self._stopped(state)
                if epoch + 1 < self.config.epochs and self._stop_agreed():
                    return self._stopped(state)  # asked during the epoch's end
            if not final and state.epoch > 0:
                # a finished run resumed (killed before its end): its last row, validated again
                # (the same numbers: the validation noise is seeded)
                last = last_row(self.out / "epochs.csv")
                try:
                    with self.interruptible("validation"):
                        final = {**last, "val_report": self.val_loop().as_dict()} if last else {}
                except StopRequested:
                    return self._stopped(state)
            call("on_fit_end", trainer=self, final=final)
            return final
        finally:
            call("on_teardown", trainer=self)

    def end_epoch(self, epoch: int, state: LoopState, started: float) -> dict[str, Any]:
        """After the steps of ``epoch`` (from 0, begun at ``perf_counter()`` ``started``):
        validate (:meth:`interruptible`: a stop abandons it, and the epoch's validation is then
        not recorded; the checkpoint after its last step makes the resumed run validate it), the
        epoch's row, the state moved on to the next epoch, ``on_train_epoch_end``. Returns the
        row with ``val_report``."""
        call = self.fabric.call
        call("on_validation_start", trainer=self, state=state)
        val_started = time.perf_counter()
        with self.interruptible("validation"):
            report = self.val_loop()
        val_seconds = time.perf_counter() - val_started
        sums = self._all_reduced(state.epoch_sums)
        row = epoch_row(epoch + 1, state.step, state.skipped, sums, report,
                        self._head, self.run.bounds,
                        seconds=time.perf_counter() - started, val_seconds=val_seconds)
        state.epoch = epoch + 1
        state.reset_epoch_sums()
        call("on_train_epoch_end", trainer=self, state=state, row=row, report=report)
        return {**row, "val_report": report.as_dict()}

    def _stopped(self, state: LoopState) -> dict[str, Any]:
        """``on_stop`` (the checkpoint of ``state``, the console line) and what :meth:`fit`
        returns after a stop."""
        self.fabric.call("on_stop", trainer=self, state=state, signum=self.stop_signal)
        return {"interrupted": True, "signal": self.stop_signal, "step": state.step}

    def _stop_agreed(self) -> bool:
        """Whether to stop now. One process: whether it was asked to. Several: whether any
        was (one all-reduce of the signal, each step), so that every rank stops after the same
        step and saves the same checkpoint; a scheduler's SIGTERM reaches the ranks at slightly
        different moments, and a rank that stopped alone would leave the others waiting."""
        asked = self._stops.requested
        if self.fabric.world_size == 1:
            return asked is not None
        flag = torch.tensor([-1 if asked is None else asked], device=self.fabric.device)
        agreed = int(cast(torch.Tensor, self.fabric.all_reduce(flag, reduce_op="max")).item())
        if agreed < 0:
            return False
        self._stops.requested = agreed
        return True

    def fit_loop(self, epoch: int, state: LoopState) -> bool:
        """The steps left in ``epoch``; ``True`` if a stop was requested."""
        c, call = self.config, self.fabric.call
        self.batches.set_epoch(epoch)
        self.model.train()
        call("on_train_epoch_start", trainer=self, epoch=epoch)
        if self.batches.position >= len(self.batches):
            # resumed from a checkpoint taken after the epoch's last step, before its
            # validation: validate this epoch (iterating would start the next one)
            return False
        # exactly the batches left: the iterator is not asked for one more, which would move
        # the batches on to the next epoch, so that a checkpoint taken after the last step and
        # before validation (a stop in validation) says "this epoch's steps are done"
        left = len(self.batches) - self.batches.position
        for images in itertools.islice(self.batches, left):
            self.training_step(images, state)
            call("on_train_batch_end", trainer=self, state=state)
            if state.step % c.log_every_n_steps == 0:
                row = step_row(state.step, state.skipped, self._all_reduced(state.window),
                               self._head, self.run.bounds)
                state.window.zero_()
                call("on_log_step", trainer=self, row=row)
            if self._stop_agreed():
                return True
        return False

    def val_loop(self) -> ELBOReport:
        """The validation ELBO (seeded noise per example; shards all-reduced)."""
        c, fabric = self.config, self.fabric
        vae = cast(objective.Model, self.model)
        sums = elbo_sums(vae, self.val_data.images, batch_size=c.val_batch_size or c.batch_size,
                         seed=streams.stream_seed(c.seed, "validation_elbo"),
                         shard=(fabric.global_rank, fabric.world_size))
        sums = cast(torch.Tensor, fabric.all_reduce(sums.to(fabric.device),
                                                     reduce_op="sum")).cpu()
        bounds = self.run.bounds
        return report_from_sums(vae, sums, validity=(bounds.val_valid, bounds.val_reason))

    # -- one step ---------------------------------------------------------------------------------
    def training_step(self, images: torch.Tensor, state: LoopState) -> None:
        """One update: loss through the objective, backward, clip, skip if non-finite."""
        c, fabric, optimizer = self.config, self.fabric, self.optimizer
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        loss, nll, kl = self._loss_terms(images, self._noise(images.shape[0]))
        fabric.backward(loss)
        max_norm = c.grad_clip if c.grad_clip is not None else math.inf
        # Through Fabric, so that with 16-mixed the gradients are unscaled before the norm and
        # the clipping; the norm is that of the true gradients at every precision.
        # (a tensor, given max_norm; None only for clip_val)
        grad_norm = cast(torch.Tensor, fabric.clip_gradients(
            self.wrapped, optimizer, max_norm=max_norm, error_if_nonfinite=False))
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

    def _noise(self, local_batch: int) -> torch.Tensor:
        """This rank's slice of the global batch's reparameterisation noise ``(B, latent_dim)``
        (drawn on the CPU from one seeded generator on every rank), so results do not depend on
        the process count."""
        world, rank = self.fabric.world_size, self.fabric.global_rank
        latent_dim = cast(objective.Model, self.model).latent_dim
        noise = torch.randn(local_batch * world, latent_dim, generator=self._resumable.noise)
        return noise[rank * local_batch:(rank + 1) * local_batch].to(self.fabric.device)

    def _all_reduced(self, sums: torch.Tensor) -> torch.Tensor:
        """Running sums ``[loss, nll, kl, count]`` summed over the processes (a copy)."""
        return cast(torch.Tensor, self.fabric.all_reduce(sums.clone(), reduce_op="sum"))

    def _nonfinite_message(self, state: LoopState) -> str:
        c = self.config
        hint = self._head.divergence_hint()  # the head knows its own failure modes
        if hint is None:
            hint = (f"a learning rate too high ({c.lr})" if c.lr > 1e-3
                    else "a diverging decoder variance")
        last = self.checkpoint_path
        where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint yet"
        return (f"{state.nonfinite_in_a_row} consecutive steps had a non-finite loss or gradient "
                f"(step {state.step}); likely cause: {hint}; {where}")

    # -- setup ------------------------------------------------------------------------------------
    def setup(self, resume: str | Path | None) -> LoopState:
        """Processes, data, model, optimiser, batches; the loop state (restored on resume); the
        run's :class:`RunInfo`. Writes nothing: a run that cannot start leaves no folder."""
        c = self.config
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"config: out {self.out} exists and is not a folder; expected the "
                              "run's output folder")
        self._folder.check(resume)  # a folder holding another run: refused before any work
        fabric, self.precision, self.channels_last = make_fabric(
            c, [*default_callbacks(c), *self._extra_callbacks, self._folder])
        self.fabric = fabric
        fabric.launch()
        # The loss scaler of 16-mixed (None at other precisions).
        self._grad_scaler: torch.amp.GradScaler | None = getattr(
            fabric.strategy.precision, "scaler", None)
        if c.tune_malloc and fabric.device.type == "cpu":  # null: off (library default)
            tune_cpu_allocator()
        fabric.seed_everything(c.seed, verbose=False)
        self.train_data, self.val_data, self.data_shape = load_examples(
            c, *self._data, world_size=fabric.world_size)
        model = self.model = make_model(self._model_spec, c, self.data_shape)
        vae = cast(objective.Model, model)  # the same module, typed as the model protocol
        head = self._head = vae.head
        bounds = BoundNotes.of(head, self.train_data.images, self.val_data.images)
        # Batches are sliced from uint8 tensors, valid by construction: no per-step data check
        # (it would also put a data-dependent branch into a compiled graph).
        head.validate_args = False
        noise = streams.generator(c.seed, "train_noise")
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # With 16-mixed's loss scaler the gradients are unscaled before clipping; Fabric refuses
        # that for fused Adam (which would unscale inside its kernel), so the scaler gets the
        # default Adam.
        optimizer = build_adam(model.parameters(), lr=c.lr,
                               fused=c.fused_adam and self._grad_scaler is None)
        # --compile: one process compiles the whole loss (network, head, KL) into one graph;
        # under DDP Fabric compiles the wrapped network (its supported way), head and loss run
        # eagerly. (torch.compile of a module returns a module; its stubs say a callable.)
        whole_step = c.compile and fabric.world_size == 1
        wrapped, self.optimizer = fabric.setup(
            cast(nn.Module, torch.compile(model, mode=c.compile_mode))
            if c.compile and not whole_step else model, optimizer)
        self.wrapped = wrapped
        variant = objective.OBJECTIVES.get(c.objective)  # resolved once, not per step

        # the step's loss (scalar), nll and kl (B,) nats, through the objective, run by the
        # Fabric-wrapped module (so that DDP synchronises the gradients)
        def loss_terms(images: torch.Tensor,
                       eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            terms = variant.terms(vae, images, beta=c.kl_weight, noise=eps, forward=wrapped)
            return terms.loss, terms.nll, terms.kl

        self._loss_terms = (torch.compile(loss_terms, mode=c.compile_mode) if whole_step
                            else loss_terms)
        self.batches = InMemoryBatches(
            self.train_data.images, c.batch_size, shuffle=True, drop_last=c.drop_last,
            seed=c.seed, device=fabric.device if c.data_on_device else None,
            rank=fabric.global_rank, world_size=fabric.world_size)
        self._resumable = Resumable(
            config=c, data_shape=self.data_shape, model=self.model, optimizer=self.optimizer,
            batches=self.batches, precision=fabric.strategy.precision, noise=noise,
            device=fabric.device)
        state = LoopState(fabric.device)
        if resume == "auto":
            resume = self.checkpoint_path if self.checkpoint_path.is_file() else None
        if resume is not None:
            state = restore(resume, self._resumable)
            self.resumed_from = Path(resume)
        line = None
        if self.resumed_from is None and fabric.is_global_zero:
            line = precision_line(c.precision, bool(c.speed_hint), self.model,
                                  self.train_data.images[:c.batch_size], fabric.device)
        self._folder.claim(fabric, c, self.resumed_from)  # locked from here to on_teardown
        self.run = RunInfo(
            config=c, out=self.out, checkpoint_path=self.checkpoint_path,
            resumed_from=self.resumed_from, fabric=fabric, model=self.model,
            batches=self.batches, val_images=self.val_data.images,
            head_label=getattr(head, "name", "") or c.likelihood, bounds=bounds,
            precision=self.precision, channels_last=self.channels_last, precision_line=line)
        return state
