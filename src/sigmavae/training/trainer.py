"""The training loop, on Lightning Fabric.

Fabric owns devices, processes (DDP over torch.distributed, torchrun/SLURM detection, multi-node),
precision/autocast and seeding; this module states what one step computes and owns the parts a
generic loop gets wrong for this project: in-memory uint8 batches sharded exactly like one big
batch, a non-finite guard, atomic checkpoints with exact mid-epoch resume, and logs/grids/plots
that always say which units and data scaling a number has.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric
from tqdm.auto import tqdm

from .. import likelihoods
from ..data import ImageDataset, InMemoryBatches, load_dataset
from ..messages import first_line
from ..metrics.elbo import NOT_A_BOUND, ELBOReport, elbo_sums, report_from_sums
from ..models import VAE, build_model
from ..options import OptionError
from .allocator import tune_cpu_allocator
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .optim import build_adam
from .visuals import plot_curves, save_reconstruction_grid, save_sample_grid

EPOCH_COLUMNS = [
    "epoch", "step", "train_loss", "train_neg_elbo", "train_nll", "train_kl", "val_neg_elbo",
    "val_nll", "val_kl", "val_bits_per_dim", "sigma", "effective_beta", "skipped_steps",
    "seconds", "train_bound_note", "val_bound_note",
]
#: What a checkpoint needs to resume a run (evaluation needs only model, config, image_shape).
RESUME_KEYS = ("model", "optimizer", "batches", "loop", "rng", "image_shape")


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
    def of(cls, head: Any, train_images: torch.Tensor, val_images: torch.Tensor) -> BoundNotes:
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


#: Least seconds between two redraws of ``curves.png`` (the last epoch always redraws it).
CURVES_EVERY_S = 30.0


class NonFiniteLossError(RuntimeError):
    """Training produced too many consecutive non-finite losses or gradients."""


def build_vae(config: TrainConfig, image_shape: tuple[int, int, int]) -> VAE:
    """The model a config describes (head from the registry, network from the model registry)."""
    head = likelihoods.create(config.likelihood, **config.likelihood_options)
    options = dict(config.model_options)
    if config.latent_dim is not None:
        options["latent_dim"] = config.latent_dim
    try:
        return build_model(config.model, image_shape, head, **options)
    except OptionError as err:  # a value the network refuses for this image shape
        raise ConfigError(f"config: {err} (images {tuple(image_shape)})") from None


def load_splits(config: TrainConfig) -> tuple[ImageDataset, ImageDataset]:
    """The train and validation sets of ``config`` (subsets applied)."""
    opts = dict(config.data_options)
    train = load_dataset(config.data, "train", config.data_root, **opts)
    val = load_dataset(config.data, "val", config.data_root, **opts)
    if config.train_subset:
        train = train.subset(config.train_subset)
    if config.val_subset:
        val = val.subset(config.val_subset)
    return train, val


class Trainer:
    """Train a VAE described by a :class:`TrainConfig`.

    Outputs in ``config.out``: ``checkpoints/last.ckpt`` (atomic, every epoch and every
    ``checkpoint_every_n_steps``), ``epochs.csv`` and ``steps.csv`` (metrics, nats per image),
    ``tensorboard/``, ``samples/epoch_XXXX.png`` (prior samples, decoder means),
    ``reconstructions/epoch_XXXX.png``, ``curves.png``, ``config.json``, ``final.json``.
    """

    def __init__(self, config: TrainConfig, train_data: ImageDataset | None = None,
                 val_data: ImageDataset | None = None) -> None:
        self.config = config
        self._train_data, self._val_data = train_data, val_data
        self.out = Path(config.out)
        self._stop_signal: int | None = None
        self._grad_scaler: torch.amp.GradScaler | None = None
        self._curves_drawn_at: float | None = None

    # -- setup ------------------------------------------------------------------------------------
    def _make_fabric(self) -> Fabric:
        c = self.config
        world = c.devices * c.num_nodes
        strategy = "ddp" if world > 1 else "auto"
        return Fabric(accelerator=c.accelerator, devices=c.devices, num_nodes=c.num_nodes,
                      strategy=strategy, precision=c.precision)  # type: ignore[arg-type]

    def fit(self, resume: str | Path | None = None) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs; ``resume`` a checkpoint path or ``"auto"``
        (``out/checkpoints/last.ckpt`` if it exists). Returns the final metrics."""
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
        train, val = (self._train_data, self._val_data)
        if train is None or val is None:
            train, val = load_splits(c)
        self._check_batch_size(train)
        model = build_vae(c, train.image_shape)
        self.bounds = BoundNotes.of(model.head, train.images, val.images)
        for split, note in (("train", self.bounds.train_note), ("val", self.bounds.val_note)):
            if note is not None:
                fabric.print(f"note: the {split} -ELBO of {c.likelihood} is {note}")
        # Batches are sliced from uint8 tensors, valid by construction: no per-step data check
        # (it would also put a data-dependent branch into a compiled graph).
        model.head.validate = False
        self.model = model
        self.noise_rng = torch.Generator().manual_seed(c.seed)
        if c.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # With 16-mixed's loss scaler the gradients are unscaled before clipping; Fabric refuses
        # that for fused Adam (which would unscale inside its kernel), so the scaler gets the
        # default Adam.
        optimizer = build_adam(model.parameters(), lr=c.lr,
                               fused=c.fused_adam and self._grad_scaler is None)
        # `model` stays the plain module (state_dict keys, sampling); `wrapped` trains.
        wrapped, optimizer = fabric.setup(torch.compile(model) if c.compile else model, optimizer)
        device = fabric.device
        batches = InMemoryBatches(
            train.images, c.batch_size, shuffle=True, drop_last=c.drop_last, seed=c.seed,
            device=device if c.data_on_device else None, rank=fabric.global_rank,
            world_size=fabric.world_size,
        )
        self.batches = batches
        val_images = val.images
        fixed_recon = val.images[: min(32, len(val))]

        state = _LoopState(device)
        ckpt_path = self.out / "checkpoints" / "last.ckpt"
        if resume == "auto":
            resume = ckpt_path if ckpt_path.is_file() else None
        if resume is not None:
            state = self._restore(Path(resume), model, optimizer, batches, device)
        elif fabric.is_global_zero:
            self._start_outputs()
        logger = _MetricLogger(self.out, enabled=fabric.is_global_zero, resume_step=state.step)
        fabric.barrier()

        final: dict[str, Any] = {}
        with self._signals():
            for epoch in range(state.epoch, c.epochs):
                batches.set_epoch(epoch)
                model.train()
                bar = tqdm(total=len(batches), initial=batches.position,
                           desc=f"epoch {epoch + 1}/{c.epochs}", leave=False,
                           disable=not (c.progress and fabric.is_global_zero), dynamic_ncols=True)
                t0 = time.perf_counter()
                for images in batches:
                    self._train_step(wrapped, optimizer, images, state)
                    bar.update(1)
                    if state.step % c.log_every_n_steps == 0:
                        row = self._step_metrics(state, model, time.perf_counter() - t0)
                        logger.log_step(row)
                        bar.set_postfix(loss=f"{row['train_loss']:.1f}",
                                        beta=_fmt(row.get("effective_beta")))
                    if (c.checkpoint_every_n_steps
                            and state.step % c.checkpoint_every_n_steps == 0):
                        self._checkpoint(ckpt_path, model, optimizer, batches, state)
                    if self._stop_signal is not None:
                        bar.close()
                        self._checkpoint(ckpt_path, model, optimizer, batches, state)
                        fabric.print(f"received signal {self._stop_signal}: saved {ckpt_path} at "
                                     f"step {state.step}; resume with --resume {ckpt_path}")
                        return {"interrupted": True, "signal": self._stop_signal,
                                "step": state.step}
                bar.close()
                report = self._validate(model, val_images, c)
                row = self._epoch_metrics(epoch, state, report, model, time.perf_counter() - t0)
                state.epoch = epoch + 1
                state.reset_epoch_sums()
                if fabric.is_global_zero:
                    logger.log_epoch(row)
                    save_sample_grid(model, self.out / "samples" / f"epoch_{epoch + 1:04d}.png",
                                     n=c.num_samples, seed=c.seed)
                    save_reconstruction_grid(
                        model, fixed_recon,
                        self.out / "reconstructions" / f"epoch_{epoch + 1:04d}.png")
                    self._plot_curves(last_epoch=epoch + 1 == c.epochs)
                self._checkpoint(ckpt_path, model, optimizer, batches, state)
                if c.keep_epoch_checkpoints and fabric.is_global_zero:
                    save_checkpoint(self._state(model, optimizer, batches, state),
                                    self.out / "checkpoints" / f"epoch_{epoch + 1:04d}.ckpt")
                fabric.print(_epoch_line(row, report, c.likelihood))
                final = {**row, "val_report": report.as_dict()}
        if fabric.is_global_zero and final:
            (self.out / "final.json").write_text(json.dumps(final, indent=2))
        logger.close()
        return final

    def _plot_curves(self, last_epoch: bool) -> None:
        """Redraw ``curves.png`` after the first and the last epoch and otherwise at most every
        ``CURVES_EVERY_S`` seconds: matplotlib takes 0.1-0.5 s a figure, as long as a whole
        epoch of a small data set on a GPU."""
        now = time.monotonic()
        if last_epoch or self._curves_drawn_at is None or (
                now - self._curves_drawn_at >= CURVES_EVERY_S):
            plot_curves(self.out / "epochs.csv", self.out / "curves.png")
            self._curves_drawn_at = now

    def _check_batch_size(self, train: ImageDataset) -> None:
        global_batch = self.config.batch_size * self.fabric.world_size
        if global_batch > len(train):
            raise ConfigError(
                f"batch_size {self.config.batch_size} x {self.fabric.world_size} process(es) = "
                f"{global_batch} is larger than the training set ({len(train)} images of "
                f"{train.name}); lower --batch-size")

    def _start_outputs(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in ("epochs.csv", "steps.csv"):
            (self.out / stale).unlink(missing_ok=True)
        (self.out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))

    # -- one step ---------------------------------------------------------------------------------
    def _train_step(self, wrapped: Any, optimizer: Any, images: torch.Tensor,
                    state: _LoopState) -> None:
        c = self.config
        if c.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        terms = wrapped(images, beta=c.beta, noise=self._noise(images.shape[0]))
        self.fabric.backward(terms.loss)
        max_norm = c.grad_clip if c.grad_clip is not None else math.inf
        # Through Fabric, so that with 16-mixed the gradients are unscaled before the norm and
        # the clipping; the norm is that of the true gradients at every precision.
        grad_norm = self.fabric.clip_gradients(wrapped, optimizer, max_norm=max_norm,
                                               error_if_nonfinite=False)
        # One host-device synchronisation per step (the skip decision needs it).
        finite = bool(torch.isfinite(grad_norm) & torch.isfinite(terms.loss.detach()))
        if finite:
            optimizer.step()
            state.nonfinite_in_a_row = 0
            state.add(terms)
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
        """This rank's slice of the global batch's reparameterisation noise (drawn on the CPU
        from one seeded generator on every rank), so results do not depend on the process count."""
        world, rank = self.fabric.world_size, self.fabric.global_rank
        noise = torch.randn(local_batch * world, self.model.latent_dim, generator=self.noise_rng)
        return noise[rank * local_batch:(rank + 1) * local_batch].to(self.fabric.device)

    def _nonfinite_message(self, state: _LoopState) -> str:
        c = self.config
        hint = self.model.head.divergence_hint()  # the head knows its own failure modes
        if hint is None:
            hint = (f"a learning rate too high ({c.lr})" if c.lr > 1e-3
                    else "a diverging decoder variance")
        last = self.out / "checkpoints" / "last.ckpt"
        where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint yet"
        return (f"{state.nonfinite_in_a_row} consecutive steps had a non-finite loss or gradient "
                f"(step {state.step}); likely cause: {hint}; {where}")

    # -- metrics ----------------------------------------------------------------------------------
    def _step_metrics(self, state: _LoopState, model: VAE, seconds: float) -> dict[str, Any]:
        sums = self.fabric.all_reduce(state.window.clone(), reduce_op="sum")
        n = max(float(sums[3]), 1.0)
        row = {"step": state.step, "train_loss": float(sums[0]) / n,
               "train_nll": float(sums[1]) / n, "train_kl": float(sums[2]) / n,
               "skipped_steps": state.skipped, **_sigma_columns(model)}
        row.update(self.bounds.train_columns(row["train_nll"], row["train_kl"]))
        state.window.zero_()
        return row

    def _validate(self, model: VAE, val_images: torch.Tensor, c: TrainConfig) -> ELBOReport:
        sums = elbo_sums(model, val_images, batch_size=max(c.batch_size, 256), seed=c.seed + 1,
                         shard=(self.fabric.global_rank, self.fabric.world_size))
        sums = self.fabric.all_reduce(sums.to(self.fabric.device), reduce_op="sum").cpu()
        return report_from_sums(model, sums,
                                validity=(self.bounds.val_valid, self.bounds.val_reason))

    def _epoch_metrics(self, epoch: int, state: _LoopState, report: ELBOReport, model: VAE,
                       seconds: float) -> dict[str, Any]:
        sums = self.fabric.all_reduce(state.epoch_sums.clone(), reduce_op="sum")
        n = max(float(sums[3]), 1.0)
        row: dict[str, Any] = {
            "epoch": epoch + 1, "step": state.step, "train_loss": float(sums[0]) / n,
            "train_nll": float(sums[1]) / n, "train_kl": float(sums[2]) / n,
            "val_nll": report.nll if report.valid_bound else NOT_A_BOUND, "val_kl": report.kl,
            "val_neg_elbo": report.neg_elbo if report.valid_bound else NOT_A_BOUND,
            "val_bits_per_dim": report.bits_per_dim if report.valid_bound else NOT_A_BOUND,
            "skipped_steps": state.skipped, "seconds": round(seconds, 3),
            **_sigma_columns(model), "val_bound_note": self.bounds.val_note,
        }
        row.update(self.bounds.train_columns(row["train_nll"], row["train_kl"]))
        return row

    # -- checkpoints ------------------------------------------------------------------------------
    def _state(self, model: VAE, optimizer: Any, batches: InMemoryBatches,
               state: _LoopState) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(),
                               "noise": self.noise_rng.get_state()}
        if torch.cuda.is_available() and self.fabric.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.fabric.device)
        return {
            "format": "sigmavae-checkpoint-v1",
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "batches": batches.state_dict(),
            "loop": state.state_dict(),
            "precision": self.fabric.strategy.precision.state_dict(),  # 16-mixed: loss scale
            "rng": rng,
            "config": self.config.to_dict(),
            "image_shape": list(model.data_shape),
        }

    def _checkpoint(self, path: Path, model: VAE, optimizer: Any, batches: InMemoryBatches,
                    state: _LoopState) -> None:
        if self.fabric.is_global_zero:
            save_checkpoint(self._state(model, optimizer, batches, state), path)
        self.fabric.barrier()

    def _restore(self, path: Path, model: VAE, optimizer: Any, batches: InMemoryBatches,
                 device: torch.device) -> _LoopState:
        ckpt = load_checkpoint(path)
        missing = [k for k in RESUME_KEYS if k not in ckpt]
        if missing:
            raise CheckpointError(f"cannot resume from {path}: it has no {', '.join(missing)} "
                                  "(a checkpoint for evaluation only?); start a new run instead")
        if list(ckpt["image_shape"]) != list(model.data_shape):
            raise CheckpointError(f"cannot resume from {path}: it is for images "
                                  f"{ckpt['image_shape']}, the data has {list(model.data_shape)}")
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            batches.load_state_dict(ckpt["batches"])
            if ckpt.get("precision"):
                self.fabric.strategy.precision.load_state_dict(ckpt["precision"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            self.noise_rng.set_state(ckpt["rng"]["noise"])
            if "cuda" in ckpt["rng"] and device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
            state = _LoopState(device)
            state.load_state_dict(ckpt["loop"])
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"cannot resume from {path}: it does not fit this run's "
                                  f"config ({first_line(err)}); resume with the config it was "
                                  "trained with, or start a new run") from None
        self.fabric.print(f"resumed from {path} at epoch {state.epoch}, step {state.step}")
        return state

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT: finish the current step, save a checkpoint, exit cleanly."""
        def handler(signum: int, frame: Any) -> None:
            self._stop_signal = signum

        previous = {}
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            previous = {}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class _LoopState:
    """Counters and running sums that a checkpoint must carry for an exact resume."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.epoch = 0
        self.step = 0
        self.skipped = 0
        self.nonfinite_in_a_row = 0
        # [sum loss, sum nll, sum kl, count] over the epoch and over the current log window, on
        # the training device: adding to them needs no host-device synchronisation.
        self.device = torch.device(device)
        self.epoch_sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        self.window = torch.zeros(4, dtype=torch.float64, device=self.device)

    def add(self, terms: Any) -> None:
        b = terms.nll.shape[0]
        values = torch.stack([terms.loss.detach() * b, terms.nll.detach().sum(),
                              terms.kl.detach().sum(), torch.full_like(terms.loss, b)]).double()
        for sums in (self.epoch_sums, self.window):
            sums += values

    def reset_epoch_sums(self) -> None:
        self.epoch_sums.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "skipped": self.skipped,
                "epoch_sums": self.epoch_sums.cpu().clone(), "window": self.window.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step, self.skipped = state["epoch"], state["step"], state["skipped"]
        self.epoch_sums = state["epoch_sums"].to(self.device, copy=True)
        self.window = state["window"].to(self.device, copy=True)


class _MetricLogger:
    """``steps.csv``, ``epochs.csv`` and TensorBoard scalars (rank 0 only)."""

    def __init__(self, out: Path, enabled: bool, resume_step: int) -> None:
        self.enabled = enabled
        self.out = out
        self.writer = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        _truncate_csv(out / "steps.csv", resume_step)
        _truncate_csv(out / "epochs.csv", resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)
        except ImportError:  # tensorboard is optional at run time
            self.writer = None

    def log_step(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        _append_csv(self.out / "steps.csv", row, list(row))
        self._scalars("train", row)

    def log_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        _append_csv(self.out / "epochs.csv", row, EPOCH_COLUMNS)
        self._scalars("epoch", row)

    def _scalars(self, prefix: str, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, int | float):
                self.writer.add_scalar(f"{prefix}/{key}", value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _sigma_columns(model: VAE) -> dict[str, float | None]:
    sigma, beta = model.head.sigma, model.head.effective_beta
    return {"sigma": None if sigma is None else float(sigma),
            "effective_beta": None if beta is None else float(beta)}


def _append_csv(path: Path, row: dict[str, Any], columns: list[str]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


def _truncate_csv(path: Path, max_step: int) -> None:
    """Drop rows logged after ``max_step`` (a resumed run re-logs them)."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
        columns = list(rows[0]) if rows else []
    if not columns:
        return
    kept = [r for r in rows if int(float(r["step"])) <= max_step]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(kept)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _epoch_line(row: dict[str, Any], report: ELBOReport, likelihood: str) -> str:
    """The console line of an epoch: a number is called -ELBO only where it is a bound (the
    full reasons are printed once, at the start of the run)."""
    note = row.get("train_bound_note")
    if row["train_neg_elbo"] == NOT_A_BOUND:
        train = (f"train loss {row['train_loss']:.2f} nats/image (-ELBO n/a: not a bound for "
                 f"{likelihood}, see the note above)")
    else:
        train = f"train -ELBO {row['train_neg_elbo']:.2f} nats/image"
        if note:
            train += f" ({note.split(' (')[0]})"
    if report.valid_bound:
        val = report.summary()
    else:
        val = (f"-ELBO n/a (not a bound for {likelihood}, see the note above); rate kl "
               f"{report.kl:.2f} nats/image")
    return f"epoch {row['epoch']}: {train}; val {val}"
