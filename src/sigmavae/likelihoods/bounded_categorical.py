"""``log softmax(logits)[x]`` over 256 intensities in bounded memory, with its own autograd.

The 256-way categorical head's ``params`` hold 256 values per data dimension (App. D: 3 GiB in
float32 for one 1024x1024 colour image), and a one-shot ``gather - logsumexp`` allocates several
``params``-sized temporaries in its forward and backward passes.
:func:`bounded_categorical_log_prob` gives the same values and gradients in
``O(chunk_pixels * 256)`` extra memory (``benchmarks/memory.py``, ``benchmarks/README.md``).
"""

from __future__ import annotations

import math

import torch

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


def _class_major(t: torch.Tensor, m: int, n: int) -> torch.Tensor | None:
    """View ``(d0, ..., 256)`` as ``(d0, 256, rest)`` = ``(m, 256, n)``, or ``None`` when the
    strides make that impossible without a copy."""
    try:
        return t.movedim(-1, 1).view(m, NUM_LEVELS, n)
    except RuntimeError:
        return None


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


class _BoundedCategoricalLogProb(torch.autograd.Function):
    """``log softmax(L)[x]`` for class-major ``L (m, 256, n)``, ``x (m, n)``, chunk by chunk.

    Saves ``L`` (a view of the caller's tensor), ``x`` and the ``logsumexp`` ``(m, n)``; the
    backward recomputes ``softmax = exp(L - logsumexp)`` per chunk, writing straight into the
    gradient, so neither pass holds more than one chunk's ``(., 256, .)`` temporary. Under
    ``create_graph=True`` the backward is computed with differentiable operations in one piece
    (correct higher-order gradients, but a full ``(m, 256, n)`` softmax).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor, chunk: int):
        m, _, n = logits.shape
        out = logits.new_empty((m, n))
        lse = logits.new_empty((m, n))
        for rows, cols in _chunks(m, n, chunk):
            block = logits[rows, :, cols]
            block_lse = torch.logsumexp(block, dim=1)
            picked = block.gather(1, x[rows, cols].unsqueeze(1)).squeeze(1)
            torch.sub(picked, block_lse, out=out[rows, cols])
            lse[rows, cols] = block_lse
        ctx.chunk = chunk
        ctx.save_for_backward(logits, x, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, x, lse = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable, in one piece
            grad = torch.softmax(logits, dim=1).mul(grad_out.unsqueeze(1)).neg()
            return grad.scatter_add(1, x.unsqueeze(1), grad_out.unsqueeze(1)), None, None
        m, _, n = logits.shape
        grad = torch.empty_like(logits)  # the layout of ``logits`` (dense) or contiguous
        for rows, cols in _chunks(m, n, ctx.chunk):
            g = grad_out[rows, cols].unsqueeze(1)
            block = grad[rows, :, cols]
            # d(picked - lse)/dL = onehot(x) - softmax(L); the same operations as autograd
            # through gather and logsumexp, so the result matches the plain path.
            torch.sub(logits[rows, :, cols], lse[rows, cols].unsqueeze(1), out=block)
            block.exp_().mul_(g).neg_()
            block.scatter_add_(1, x[rows, cols].unsqueeze(1), g)
        return grad, None, None


def bounded_categorical_log_prob(
    logits: torch.Tensor, x: torch.Tensor, chunk_pixels: int | None = None
) -> torch.Tensor:
    """:func:`categorical_log_prob` in bounded memory: same signature, same values and gradient.

    ``logits (..., 256)`` (any strides; the head's parameter-major view ``(B, C, H, W, 256)`` of
    ``params (B, 256*C, H, W)`` is used in place), integer ``x`` broadcastable to ``logits``
    without its last dimension. ``logsumexp`` and the picked logit are computed ``chunk_pixels``
    data elements at a time, and the backward recomputes the softmax per chunk, so the extra
    memory is ``O(chunk_pixels * 256)`` plus ``O(numel(x))`` (the output, the saved
    ``logsumexp``), besides the gradient of ``logits`` itself. Logits whose strides cannot be
    viewed as ``(d0, 256, rest)`` are copied once. Higher-order gradients (``create_graph=True``)
    are supported but materialise the full softmax in that backward. ``chunk_pixels=None``
    picks the size by device and size (:func:`auto_chunk_pixels`).
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
    m = lead[0]
    n = math.prod(lead[1:])
    index = x.long().expand(lead).reshape(m, n)
    class_major = _class_major(logits, m, n)
    if class_major is None:
        class_major = logits.movedim(-1, 1).reshape(m, NUM_LEVELS, n)
    out = _BoundedCategoricalLogProb.apply(class_major, index, chunk_pixels)
    return out.view(lead)
