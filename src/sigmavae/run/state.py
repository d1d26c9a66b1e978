"""What a run's state is: :class:`TrainState`, what a checkpoint holds (a versioned, checked
layout); the loop's counters (:class:`LoopState`) that an exact resume needs; and the two moves
between a live run (:class:`Resumable`: model, optimiser, batches, precision plugin, generators)
and a checkpoint: :meth:`TrainState.capture` and :func:`restore`.

A checkpoint file is a plain dict (tensors, numbers, strings, lists, dicts; read with
``weights_only=True``) with a ``format`` entry. This version of sigmavae writes
:data:`FORMAT` and reads it and :data:`FORMAT_V1` (the layout of the first releases, whose
``image_shape`` is now ``data_shape``); a file of any other format, or with entries its format
does not have, is refused with one line (:class:`CheckpointError`), never half-read.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..messages import first_line
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .resume import fixed_changes, refusal

#: The format this version writes: ``data_shape`` is the shape of one example, any rank.
FORMAT = "sigmavae-checkpoint-v2"
#: The first releases' format: as v2, with ``image_shape`` (3 integers) for ``data_shape``.
FORMAT_V1 = "sigmavae-checkpoint-v1"
#: What a checkpoint needs to resume a run (evaluation needs only model, config, data_shape).
RESUME_KEYS = ("model", "optimizer", "batches", "loop", "rng", "data_shape")
#: format -> the entry holding the shape of one example.
_SHAPE_KEY = {FORMAT: "data_shape", FORMAT_V1: "image_shape"}


class Stateful(Protocol):
    """Anything whose state a checkpoint keeps: an optimiser, the batches, a precision plugin."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any, /) -> Any: ...


@dataclass(frozen=True)
class Resumable:
    """The live parts of a run that a checkpoint captures and an exact resume restores.

    Attributes:
        config, data_shape: what the run was built for (``data_shape``: one example's).
        model: the plain module (not a Fabric- or compile-wrapped one: its ``state_dict`` keys
            are those :func:`~sigmavae.run.load.load_trained` reads).
        optimizer, batches, precision: the optimiser, the batch iterator
            (:class:`~sigmavae.data.InMemoryBatches`: epoch and position) and the precision
            plugin (16-mixed: the loss scale).
        noise: the generator of the training noise (``streams.generator(seed, "train_noise")``).
        device: the training device (on CUDA its generator is kept too).
    """

    config: TrainConfig
    data_shape: tuple[int, ...]
    model: nn.Module
    optimizer: Stateful
    batches: Stateful
    precision: Stateful
    noise: torch.Generator
    device: torch.device


@dataclass
class TrainState:
    """Everything a run saves (units: ``data_shape`` in elements of one example).

    Attributes:
        model: the model's ``state_dict()`` (names -> tensors).
        config: the run's :meth:`TrainConfig.to_dict` (rebuilds the model for evaluation).
        data_shape: shape of one example, ``[C, H, W]`` or ``[T, C, H, W]``.
        optimizer, batches, loop, precision, rng: the optimiser's, the batch iterator's, the
            loop counters' (:class:`LoopState`), the precision plugin's (16-mixed: the loss
            scale) and the random generators' states; ``None`` in a checkpoint meant for
            evaluation only (it cannot resume a run).
        format: :data:`FORMAT`.
    """

    model: dict[str, torch.Tensor]
    config: dict[str, Any]
    data_shape: list[int]
    optimizer: dict[str, Any] | None = None
    batches: dict[str, Any] | None = None
    loop: dict[str, Any] | None = None
    precision: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    format: str = FORMAT

    @classmethod
    def capture(cls, run: Resumable, loop: LoopState) -> TrainState:
        """Everything an exact resume of ``run`` at ``loop`` needs (copies nothing it need not:
        the tensors are the live ones until saved)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "noise": run.noise.get_state()}
        if torch.cuda.is_available() and run.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(run.device)
        return cls(model=run.model.state_dict(), config=run.config.to_dict(),
                   data_shape=list(run.data_shape), optimizer=run.optimizer.state_dict(),
                   batches=run.batches.state_dict(), loop=loop.state_dict(),
                   precision=run.precision.state_dict(), rng=rng)

    def to_dict(self) -> dict[str, Any]:
        """The dict written to the file (``None`` entries left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def missing_for_resume(self) -> list[str]:
        """The :data:`RESUME_KEYS` this state lacks (empty: it can resume a run)."""
        return [k for k in RESUME_KEYS if getattr(self, k) is None]

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path`` (see :func:`save_checkpoint`)."""
        return save_checkpoint(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> TrainState:
        """Read and check checkpoint ``path`` (see :func:`load_checkpoint`, :meth:`from_dict`)."""
        return cls.from_dict(load_checkpoint(path, map_location=map_location), path)

    @classmethod
    def from_dict(cls, state: dict[str, Any], path: str | Path = "checkpoint") -> TrainState:
        """Check the format and the entries of a loaded checkpoint (``path`` names it in errors).

        Raises:
            CheckpointError: unknown or missing ``format``, entries the format does not have,
                no ``config`` or no data shape, or a data shape that is not positive integers.
        """
        version = state.get("format")
        shape_key = _SHAPE_KEY.get(version) if isinstance(version, str) else None
        if shape_key is None:
            found = "no 'format' entry" if version is None else f"format {version!r}"
            raise CheckpointError(f"{path}: the checkpoint has {found}; this sigmavae reads "
                                  f"{FORMAT!r} and {FORMAT_V1!r} (written by another version "
                                  "of sigmavae, or not by sigmavae train?)")
        known = ({f.name for f in fields(cls)} - {"data_shape"}) | {shape_key}
        unknown = sorted(str(k) for k in state if k not in known)
        if unknown:
            raise CheckpointError(f"{path}: unknown entr{'ies' if len(unknown) > 1 else 'y'} "
                                  f"{unknown} in a {version!r} checkpoint (it has "
                                  f"{', '.join(sorted(known))}); refusing to guess what "
                                  "they mean")
        for key in ("config", shape_key):
            if key not in state:
                raise CheckpointError(f"{path} is not a sigmavae training checkpoint: it has "
                                      f"no {key!r} entry")
        values = {k: v for k, v in state.items() if k not in (shape_key, "format")}
        # a v1 state is read into the v2 layout (and written as v2 if saved again)
        return cls(**values, data_shape=_shape(state[shape_key], shape_key, path))


def _shape(value: Any, key: str, path: str | Path) -> list[int]:
    """A checked data shape: 3 positive integers for v1's ``image_shape``, 1+ for v2."""
    v1 = key == "image_shape"
    ok = (isinstance(value, list | tuple) and (len(value) == 3 if v1 else len(value) >= 1)
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))
    if not ok:
        what = ("3 positive integers (channels, height, width)" if v1 else
                "positive integers (the shape of one example, e.g. channels, height, width)")
        raise CheckpointError(f"{path}: the checkpoint's {key!r} must be {what}, got {value!r}")
    return [int(v) for v in value]


class LoopState:
    """Counters and running sums that a checkpoint must carry for an exact resume.

    ``epoch_sums`` and ``window`` are ``[sum loss, sum nll, sum kl, count]`` (nats, examples)
    over the epoch and over the current log window, float64 on the training device: adding to
    them needs no host-device synchronisation.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.epoch = 0
        self.step = 0
        self.skipped = 0
        self.nonfinite_in_a_row = 0
        self.device = torch.device(device)
        self.epoch_sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        self.window = torch.zeros(4, dtype=torch.float64, device=self.device)

    def add(self, loss: torch.Tensor, nll: torch.Tensor, kl: torch.Tensor) -> None:
        """Add a step's ``loss`` (scalar), ``nll`` and ``kl`` ``(B,)`` (nats) to both sums."""
        b = nll.shape[0]
        loss = loss.detach()
        values = torch.stack([loss * b, nll.detach().sum(), kl.detach().sum(),
                              torch.full_like(loss, b)]).double()
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


def restore(path: str | Path, run: Resumable) -> LoopState:
    """Read the checkpoint ``path`` and put its state into ``run``: weights, optimiser, batch
    position, loss scale, the random generators (torch's, the noise's, CUDA's); returns the
    loop counters to continue from.

    Raises:
        CheckpointError: an unreadable file or another format (:meth:`TrainState.load`), a
            checkpoint for evaluation only, one for examples of another shape, one whose
            config differs from ``run``'s in a key a resume may not change
            (:data:`~sigmavae.run.resume.CHANGEABLE_ON_RESUME`), or one whose state does not
            fit ``run`` (another model or optimiser).
    """
    path = Path(path)
    saved = TrainState.load(path)
    missing = saved.missing_for_resume()
    if missing:
        raise CheckpointError(f"cannot resume from {path}: it has no {', '.join(missing)} "
                              "(a checkpoint for evaluation only?); start a new run instead")
    if list(saved.data_shape) != list(run.data_shape):
        raise CheckpointError(f"cannot resume from {path}: it is for examples of shape "
                              f"{saved.data_shape}, the data has {list(run.data_shape)}")
    changed = fixed_changes(saved.config, run.config)
    if changed:  # the run it continues was another: its model, data, optimiser or seed
        raise CheckpointError(f"cannot resume from {path} with {refusal(changed)}")
    rng: dict[str, Any] = saved.rng or {}
    try:
        run.model.load_state_dict(saved.model)
        run.optimizer.load_state_dict(saved.optimizer)
        run.batches.load_state_dict(saved.batches or {})
        if saved.precision:
            run.precision.load_state_dict(saved.precision)
        torch.set_rng_state(rng["torch"])
        run.noise.set_state(rng["noise"])
        if "cuda" in rng and run.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], run.device)
        loop = LoopState(run.device)
        loop.load_state_dict(saved.loop or {})
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"cannot resume from {path}: it does not fit this run's "
                              f"config ({first_line(err)}); resume with the config it was "
                              "trained with, or start a new run") from None
    return loop
