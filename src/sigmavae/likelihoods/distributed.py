"""All-reduce helpers so batch statistics mean the same thing on 1 or N processes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist

#: Depth of :func:`local_statistics` blocks open in this process.
_local_depth = 0


@contextlib.contextmanager
def local_statistics() -> Iterator[None]:
    """Within the block, batch statistics are this process's own: no all-reduce, as on one
    process. For work one rank does alone while the others wait (the trainer's start-up timing
    probe on rank 0): a collective there would wait for ranks that never join it."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def is_distributed() -> bool:
    """True when a default torch.distributed process group is initialised with > 1 process
    (and no :func:`local_statistics` block is open)."""
    return (_local_depth == 0 and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, differentiably; the identity on a single process.

    The backward pass all-reduces the incoming gradients, so with DDP's gradient averaging the
    gradients equal those of one process holding the concatenated batch.
    """
    if not is_distributed():
        return tensor
    return _AllReduceSum.apply(tensor)


class _AllReduceSum(torch.autograd.Function):
    """``y = sum_r x_r`` on every rank; the gradient of a sum of per-rank losses w.r.t. ``x_r`` is
    the sum over ranks of their incoming gradients, hence the all-reduce in backward."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad
