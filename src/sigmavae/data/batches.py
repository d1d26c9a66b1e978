"""Mini-batches sliced from an in-memory uint8 tensor of examples (images ``(N, C, H, W)``,
sequences ``(N, T, C, H, W)``, any shape indexed on dim 0), shardable across processes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from ..streams import epoch_seed
from .errors import DataOptionError


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataOptionError(f"InMemoryBatches: {name} must be a positive integer, got {value!r}")
    return value


class InMemoryBatches:
    """Iterate over batches of ``images`` (uint8 ``(N, *example_shape)``: images ``(N, C, H, W)``,
    sequences ``(N, T, C, H, W)``, or any tensor indexed on dim 0).

    Each epoch ``e`` uses one permutation of ``range(N)``: ``torch.randperm(N)`` drawn from a CPU
    :class:`torch.Generator` seeded with ``streams.epoch_seed(seed, e)`` (``seed + e``;
    ``arange(N)`` if ``shuffle=False``). The
    permutation is cut into *global* batches of ``batch_size * world_size`` examples, and process
    ``rank`` gets the contiguous slice ``[rank * batch_size, (rank + 1) * batch_size)`` of each
    global batch. So at every step the shards of ranks ``0..world_size-1``, concatenated in rank
    order, are exactly the batch that a single process with ``batch_size * world_size`` and the
    same seed sees; every rank gets the same number of batches, all of equal size.

    Last partial global batch (``N`` not a multiple of ``batch_size * world_size``):

    * ``drop_last=True``: dropped (``len = N // (batch_size * world_size)``); the equivalence above
      then holds at every step.
    * ``drop_last=False`` (default): kept (``len = ceil(N / (batch_size * world_size))``). With
      ``world_size > 1`` its ``r`` examples are padded, by wrapping around to the start of the same
      epoch's permutation, to ``world_size * ceil(r / world_size)`` so every rank gets
      ``ceil(r / world_size)`` examples (like ``DistributedSampler``): the union is the
      single-process last batch plus fewer than ``world_size`` repeated examples. With
      ``world_size=1`` nothing is padded.

    Epochs and resuming: iterating yields the remaining batches of the current epoch, starting at
    the current position, and a completed pass moves to the next epoch (so plain repeated
    ``for batch in batches`` loops see fresh permutations). ``set_epoch(e)`` (as with
    ``DistributedSampler``) jumps to the start of epoch ``e``; it is a no-op when ``e`` is already
    the current epoch, so a position restored with :meth:`load_state_dict` survives the usual
    ``set_epoch`` call at the top of the epoch loop. :meth:`state_dict` records the epoch and the
    number of batches already yielded in it; a new object given that state yields identical
    batches from there on. One iteration at a time per object.

    Args:
        images: tensor whose first dimension indexes examples (normally uint8 ``(N, C, H, W)``
            or ``(N, T, C, H, W)``; nothing here depends on the shape of one example).
        batch_size: examples per batch *per process*.
        shuffle: permute every epoch (else examples come in stored order).
        drop_last: drop the last partial global batch (see above).
        seed: base seed; epoch ``e`` uses ``epoch_seed(seed, e)``. The same on every rank.
        device: if given, ``images`` are moved there once and batches are sliced there.
        rank: this process's index (distributed data parallel); the default: a single process.
        world_size: the number of processes; the default: a single process.

    Iterating yields tensors ``images[idx]`` of shape ``(batch_size, *example_shape)`` (smaller
    for a kept last batch), same dtype as ``images`` (uint8), contiguous, on ``device``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim < 1:
            raise DataOptionError("InMemoryBatches: images must be a tensor with at least one dim")
        if images.shape[0] == 0:
            raise DataOptionError("InMemoryBatches: images is empty (N = 0)")
        self.batch_size = _positive_int("batch_size", batch_size)
        self.world_size = _positive_int("world_size", world_size)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise DataOptionError(
                f"InMemoryBatches: rank must be an integer in [0, world_size={world_size}), "
                f"got {rank!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DataOptionError(f"InMemoryBatches: seed must be an integer, got {seed!r}")
        self.rank = rank
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.images = images if device is None else images.to(device)
        self.device = self.images.device
        self.num_examples = int(images.shape[0])
        self.global_batch_size = self.batch_size * self.world_size
        if len(self) == 0:
            raise DataOptionError(
                f"InMemoryBatches: {self.num_examples} examples give no batch of "
                f"{self.global_batch_size} (batch_size * world_size) with drop_last=True"
            )
        self._epoch = 0
        self._position = 0
        self._perm_cache: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        if self.drop_last:
            return self.num_examples // self.global_batch_size
        return math.ceil(self.num_examples / self.global_batch_size)

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch already yielded."""
        return self._position

    def set_epoch(self, epoch: int) -> None:
        """Go to the start of ``epoch``; a no-op if ``epoch`` is the current epoch."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise DataOptionError(f"set_epoch: epoch must be a non-negative integer, got {epoch!r}")
        if epoch != self._epoch:
            self._epoch, self._position = epoch, 0

    def permutation(self, epoch: int) -> torch.Tensor:
        """The int64 CPU permutation of ``range(N)`` used in ``epoch`` (same on every rank)."""
        if self._perm_cache is not None and self._perm_cache[0] == epoch:
            return self._perm_cache[1]
        if self.shuffle:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            perm = torch.randperm(self.num_examples, generator=gen)
        else:
            perm = torch.arange(self.num_examples)
        self._perm_cache = (epoch, perm)
        return perm

    def global_batch_indices(self, epoch: int, step: int) -> torch.Tensor:
        """Indices of global batch ``step`` of ``epoch``, after padding (see class docstring)."""
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} out of range for {len(self)} batches per epoch")
        perm = self.permutation(epoch)
        g = self.global_batch_size
        batch = perm[step * g : (step + 1) * g]
        remainder = batch.numel() % self.world_size
        if remainder:
            pad = self.world_size - remainder
            repeats = math.ceil(pad / self.num_examples)
            batch = torch.cat([batch, perm.repeat(repeats)[:pad]])
        return batch

    def batch_indices(self, epoch: int, step: int) -> torch.Tensor:
        """Indices (int64, CPU) of this rank's batch ``step`` of ``epoch``."""
        batch = self.global_batch_indices(epoch, step)
        per_rank = batch.numel() // self.world_size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._position >= len(self):  # a previous pass ended exactly at the epoch's end
            self._epoch, self._position = self._epoch + 1, 0
        epoch = self._epoch
        while self._position < len(self) and self._epoch == epoch:
            idx = self.batch_indices(epoch, self._position).to(self.device, non_blocking=True)
            self._position += 1
            yield self.images.index_select(0, idx)
        if self._epoch == epoch and self._position >= len(self):
            self._epoch, self._position = epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batch"}`` (where to continue) plus the settings a resume must match."""
        return {
            "epoch": self._epoch,
            "batch": self._position,
            "seed": self.seed,
            "num_examples": self.num_examples,
            "global_batch_size": self.global_batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`), possibly with another world size.

        The global batch sequence depends only on ``seed``, ``N``, ``batch_size * world_size``,
        ``shuffle`` and ``drop_last``; these must match, so a run may resume on a different number
        of processes as long as the global batch size is unchanged.
        """
        for key in ("seed", "num_examples", "global_batch_size", "shuffle", "drop_last"):
            if key in state and state[key] != getattr(self, key):
                raise DataOptionError(
                    f"InMemoryBatches.load_state_dict: saved {key}={state[key]!r} but this "
                    f"object has {key}={getattr(self, key)!r}; the batches would differ"
                )
        epoch, batch = state.get("epoch"), state.get("batch")
        if (
            not isinstance(epoch, int)
            or not isinstance(batch, int)
            or epoch < 0
            or not 0 <= batch <= len(self)
        ):
            raise DataOptionError(
                f"InMemoryBatches.load_state_dict: need integer epoch >= 0 and batch in "
                f"[0, {len(self)}], got epoch={epoch!r}, batch={batch!r}"
            )
        self._epoch, self._position = epoch, batch
