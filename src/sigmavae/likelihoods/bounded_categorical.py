"""``log softmax(logits)[x]`` over 256 intensities in bounded memory, with its own autograd.

The 256-way categorical head's ``params`` hold 256 values per data dimension (App. D: 3 GiB in
float32 for one 1024x1024 colour image), and a one-shot ``gather - logsumexp`` allocates several
``params``-sized temporaries in its forward and backward passes.
:func:`bounded_categorical_log_prob` gives the same values and gradients in
``O(chunk_pixels * 256)`` extra memory (``benchmarks/memory.py``, ``benchmarks/README.md``).

It works on the logits where they lie: any layout whose strides can be read as
``(rows, 256, cols)`` after reordering the data dimensions (the parameter-major view of a
contiguous or of a ``channels_last`` decoder output alike), and bf16/fp16 logits (a
bf16-mixed run's decoder output) are computed in float32 one chunk at a time. So neither a
layout copy nor a float32 copy of the logits is made, and the gradient comes back in the
logits' own dtype and layout.
"""

from __future__ import annotations

import math

import torch

from .base import HALF_DTYPES
from .bins import NUM_LEVELS

#: Default number of data elements (pixel-channel positions) per chunk of the bounded path on a
#: CPU: a chunk's temporaries hold ``chunk * 256`` values (4 MiB in float32), which stay in cache.
DEFAULT_CHUNK_PIXELS = 4096
#: On a GPU the chunk loop's cost is its kernel launches (about ten per chunk: 96 chunks took 7x
#: the one-shot time on an H200), so there the logits are cut into this many chunks instead:
#: each chunk's temporaries are 1/16 of the logits, a few launches in all.
CUDA_CHUNKS = 16


def auto_chunk_pixels(elements: int, device: torch.device) -> int:
    """The chunk size (data elements) of the bounded path for ``elements`` data elements on
    ``device``: :data:`DEFAULT_CHUNK_PIXELS` on a CPU, ``elements / CUDA_CHUNKS`` (at least the
    CPU size) on a GPU."""
    if device.type == "cuda":
        return max(DEFAULT_CHUNK_PIXELS, math.ceil(elements / CUDA_CHUNKS))
    return DEFAULT_CHUNK_PIXELS


def _class_major_order(t: torch.Tensor) -> tuple[list[int], list[int]]:
    """The data dimensions of ``t (..., 256)`` split into those before and those after the
    class dimension in memory, each in decreasing stride: ``t.permute(*rows, -1, *cols)`` is
    then ``(rows..., 256, cols...)`` in the order its elements lie. Size-1 dimensions go first."""
    strides, sizes = t.stride(), t.shape
    lead = range(t.dim() - 1)
    ones = [d for d in lead if sizes[d] == 1]
    by_stride = sorted((d for d in lead if sizes[d] != 1), key=lambda d: -strides[d])
    rows = ones + [d for d in by_stride if strides[d] > strides[-1]]
    return rows, [d for d in by_stride if strides[d] <= strides[-1]]


def _class_major(t: torch.Tensor) -> tuple[torch.Tensor, list[int]] | None:
    """``t (..., 256)`` viewed as ``(m, 256, n)`` without a copy, with the order of its data
    dimensions in that view (rows, then columns); ``None`` when the strides make such a view
    impossible (the caller then copies)."""
    rows, cols = _class_major_order(t)
    m = math.prod([t.shape[d] for d in rows])  # a list: torch.compile traces no generator
    n = math.prod([t.shape[d] for d in cols])
    try:
        return t.permute(*rows, -1, *cols).view(m, NUM_LEVELS, n), rows + cols
    except RuntimeError:
        return None


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the log-probabilities are computed in: at least float32."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


def _chunks(m: int, n: int, chunk: int) -> list[tuple[slice, slice]]:
    """Cover ``(m, n)`` with blocks of at most ``chunk`` elements (at least one): pieces of
    ``chunk`` columns of one row when ``n >= chunk``, else groups of ``chunk // n`` whole rows."""
    if m == 0 or n == 0:
        return []
    if n >= chunk:
        return [(slice(i, i + 1), slice(j, min(j + chunk, n)))
                for i in range(m) for j in range(0, n, chunk)]
    rows = max(1, chunk // n)
    return [(slice(i, min(i + rows, m)), slice(0, n)) for i in range(0, m, rows)]


#: Chunks narrower than this many columns (a ``channels_last`` view's ``(rows, 256, C)``) are
#: copied into a work buffer with the 256 classes last, where the reductions and the
#: broadcasts run over contiguous memory (reading them across a stride of C took about twice
#: as long, ``benchmarks/memory.py``); wider chunks are reduced across the classes where they lie.
CLASS_LAST_BELOW = 16


def _work(block: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """Chunk ``(r, 256, c)`` in ``dtype`` for the reductions, and the dimension of its classes:
    a ``(r, c, 256)`` copy when ``c`` is narrow, else ``block`` itself (or its ``dtype`` copy)."""
    if block.shape[2] < CLASS_LAST_BELOW:
        work = block.new_empty((block.shape[0], block.shape[2], NUM_LEVELS), dtype=dtype)
        return work.copy_(block.transpose(1, 2)), 2
    return block.to(dtype), 1


class _BoundedCategoricalLogProb(torch.autograd.Function):
    """``log softmax(L)[x]`` for class-major ``L (m, 256, n)``, ``x (m, n)``, chunk by chunk.

    Saves ``L`` (a view of the caller's tensor), ``x`` and the ``logsumexp`` ``(m, n)``; the
    backward recomputes ``softmax = exp(L - logsumexp)`` per chunk, writing into the gradient,
    so neither pass holds more than one chunk's ``(., 256, .)`` temporary. bf16/fp16 ``L`` is
    computed in float32 per chunk (the result is float32; each chunk of the gradient is rounded
    to ``L``'s dtype, as the backward of a float32 copy would round it). Under
    ``create_graph=True`` the backward is computed with differentiable operations in one piece
    (correct higher-order gradients, but a full ``(m, 256, n)`` softmax).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor, chunk: int):
        m, _, n = logits.shape
        dtype = _compute_dtype(logits.dtype)
        out = logits.new_empty((m, n), dtype=dtype)
        lse = logits.new_empty((m, n), dtype=dtype)
        for rows, cols in _chunks(m, n, chunk):
            work, dim = _work(logits[rows, :, cols], dtype)
            block_lse = torch.logsumexp(work, dim=dim)
            picked = work.gather(dim, x[rows, cols].unsqueeze(dim)).squeeze(dim)
            torch.sub(picked, block_lse, out=out[rows, cols])
            lse[rows, cols] = block_lse
        ctx.chunk = chunk
        ctx.save_for_backward(logits, x, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, x, lse = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable, in one piece
            grad = torch.softmax(logits.to(lse.dtype), dim=1).mul(grad_out.unsqueeze(1)).neg()
            grad = grad.scatter_add(1, x.unsqueeze(1), grad_out.unsqueeze(1))
            return grad.to(logits.dtype), None, None
        m, _, n = logits.shape
        grad = torch.empty_like(logits)  # the layout of ``logits`` (dense) or contiguous
        for rows, cols in _chunks(m, n, ctx.chunk):
            block, target = logits[rows, :, cols], grad[rows, :, cols]
            if block.shape[2] >= CLASS_LAST_BELOW and lse.dtype == logits.dtype:
                # the chunk of the gradient is the work space: no temporary at all
                work, dim = torch.sub(block, lse[rows, cols].unsqueeze(1), out=target), 1
            else:
                work, dim = _work(block, lse.dtype)
                work.sub_(lse[rows, cols].unsqueeze(dim))
            # d(picked - lse)/dL = onehot(x) - softmax(L); the same operations as autograd
            # through gather and logsumexp, so the result matches the plain path.
            g = grad_out[rows, cols].unsqueeze(dim)
            work.exp_().mul_(g).neg_()
            work.scatter_add_(dim, x[rows, cols].unsqueeze(dim), g)
            if work is not target:
                target.copy_(work.transpose(1, 2) if dim == 2 else work)
        return grad, None, None


def bounded_categorical_log_prob(
    logits: torch.Tensor, x: torch.Tensor, chunk_pixels: int | None = None
) -> torch.Tensor:
    """:func:`categorical_log_prob` in bounded memory: same signature, same values and gradient.

    ``logits (..., 256)`` (any strides and float dtype), integer ``x`` broadcastable to
    ``logits`` without its last dimension; returns ``(...)`` nats, float32 for bf16/fp16 logits
    (else their dtype). ``logsumexp`` and the picked logit are computed ``chunk_pixels`` data
    elements at a time, and the backward recomputes the softmax per chunk, so the extra memory
    is ``O(chunk_pixels * 256)`` plus ``O(numel(x))`` (the output, the saved ``logsumexp``),
    besides the gradient of ``logits`` itself.

    The logits are read in place whenever their data dimensions can be ordered so that memory
    holds them as ``(rows, 256, cols)``: the head's parameter-major view ``(B, C, H, W, 256)``
    of a contiguous ``params (B, 256*C, H, W)`` as ``(B, 256, C*H*W)``, that of a
    ``channels_last`` one as ``(B*H*W, 256, C)``; other strides are copied once. bf16/fp16
    logits are computed in float32 chunk by chunk (no float32 copy of the logits). Higher-order
    gradients (``create_graph=True``) are supported but materialise the full softmax in that
    backward. ``chunk_pixels=None`` picks the size by device and size (:func:`auto_chunk_pixels`).
    """
    if chunk_pixels is None:
        chunk_pixels = auto_chunk_pixels(logits.numel() // NUM_LEVELS, logits.device)
    if not isinstance(chunk_pixels, int) or isinstance(chunk_pixels, bool) or chunk_pixels < 1:
        raise ValueError(f"chunk_pixels must be a positive int, got {chunk_pixels!r}")
    if logits.shape[-1] != NUM_LEVELS:
        raise ValueError(f"bounded_categorical_log_prob: last dim must be {NUM_LEVELS}")
    lead = logits.shape[:-1]
    if not lead:
        return bounded_categorical_log_prob(logits.unsqueeze(0), x.reshape(1), chunk_pixels)[0]
    found = _class_major(logits)
    if found is None:  # e.g. a strided slice: one copy, in the original order
        order = list(range(len(lead)))
        class_major = logits.movedim(-1, 1).reshape(lead[0], NUM_LEVELS, -1)
    else:
        class_major, order = found
    # x in the view's order of the data dimensions (a small integer copy)
    index = x.long().expand(lead).permute(*order).reshape(class_major.shape[0], -1)
    out = _BoundedCategoricalLogProb.apply(class_major, index, chunk_pixels)
    # back to the data dimensions' own order (a view)
    return out.view([lead[d] for d in order]).permute(*_inverse(order))


def _inverse(order: list[int]) -> list[int]:
    inverse = [0] * len(order)
    for position, dim in enumerate(order):
        inverse[dim] = position
    return inverse
