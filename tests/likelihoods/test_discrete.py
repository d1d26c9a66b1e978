"""Bernoulli, categorical and bitwise-categorical heads: brute force over the 256 intensities,
independent references (cross-entropy, numpy bit unpacking), gradients, data validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sigmavae.likelihoods import (
    BernoulliHead,
    LikelihoodInputError,
    categorical_log_prob,
    create,
)

LEVELS = torch.arange(256, dtype=torch.float64)


def brute_force_check(dist, n_samples=4000, seed=0):
    """Check an intensity distribution element-wise against brute force over 0..255."""
    shape = dist.batch_shape + dist.event_shape
    lps = torch.stack(
        [dist.elementwise_log_prob(torch.full(shape, i, dtype=torch.long)) for i in range(256)],
        -1,
    ).double()
    assert not bool(torch.isnan(lps).any()) and float(lps.max()) <= 1e-12
    probs = lps.exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(shape, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    mean = (probs * LEVELS).sum(-1)
    torch.testing.assert_close(dist.mean.double(), mean, atol=1e-6 * 255, rtol=1e-6)
    var = (probs * (LEVELS - mean.unsqueeze(-1)) ** 2).sum(-1)
    torch.testing.assert_close(dist.variance.double(), var, atol=1e-4, rtol=1e-5)
    cdf = torch.stack([dist.elementwise_cdf(torch.full(shape, i)) for i in range(256)], -1)
    torch.testing.assert_close(cdf.double(), probs.cumsum(-1).clamp(max=1), atol=1e-6, rtol=0)
    # Sampling: empirical frequencies within 5 binomial standard errors of the probabilities.
    torch.manual_seed(seed)
    samples = dist.sample((n_samples,))
    assert samples.dtype == torch.int64 and samples.shape == (n_samples, *shape)
    assert int(samples.min()) >= 0 and int(samples.max()) <= 255
    freq = F.one_hot(samples, 256).double().mean(0)
    tol = 5 * (probs * (1 - probs) / n_samples).sqrt() + 1.5 / n_samples
    assert bool(((freq - probs).abs() <= tol).all()), float(((freq - probs).abs() - tol).max())


# -- Bernoulli ----------------------------------------------------------------------------------
def test_bernoulli_is_minus_bce_and_exact_on_binary_data():
    head = create("bernoulli")
    assert isinstance(head, BernoulliHead) and head.param_channels(3) == 3
    assert head.valid_bound is False and "normalised" in head.invalid_bound_reason
    params = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3
    x = torch.rand(4, 3, 5, 5, dtype=torch.float64)
    dist = head(params, target=x)
    ref = -F.binary_cross_entropy_with_logits(params, x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(dist.log_prob(x), ref)
    xb = (x > 0.5).double()
    ref_b = torch.distributions.Bernoulli(logits=params).log_prob(xb).sum((1, 2, 3))
    torch.testing.assert_close(head(params).log_prob(xb), ref_b)
    torch.testing.assert_close(dist.mean, torch.sigmoid(params))
    # Exactly normalised over {0, 1}: p(0) + p(1) = 1 per dimension.
    p0 = dist.elementwise_log_prob(torch.zeros_like(x)).exp()
    p1 = dist.elementwise_log_prob(torch.ones_like(x)).exp()
    torch.testing.assert_close(p0 + p1, torch.ones_like(x))
    torch.testing.assert_close(dist.elementwise_cdf(torch.zeros_like(x)), p0)
    torch.testing.assert_close(dist.elementwise_cdf(torch.ones_like(x)), torch.ones_like(x))
    torch.manual_seed(0)
    sample = dist.sample()
    assert sample.is_floating_point() and set(sample.unique().tolist()) <= {0.0, 1.0}


def test_bernoulli_rejects_data_outside_unit_interval():
    head = create("bernoulli")
    params = torch.zeros(2, 1, 3, 3)
    for bad in (torch.full((2, 1, 3, 3), 1.2), torch.full((2, 1, 3, 3), -0.5)):
        with pytest.raises(LikelihoodInputError, match=r"\[0, 1\]"):
            head(params).log_prob(bad)
    with pytest.raises(LikelihoodInputError, match="floating point"):
        head(params).log_prob(torch.zeros(2, 1, 3, 3, dtype=torch.uint8))


# -- categorical ----------------------------------------------------------------------------------
def test_categorical_is_pytorch_cross_entropy_on_the_parameter_major_layout():
    head = create("categorical")
    assert head.param_channels(3) == 768
    params = torch.randn(2, 768, 4, 4, dtype=torch.float64) * 4
    x = torch.randint(0, 256, (2, 3, 4, 4))
    # F.cross_entropy takes (B, classes, d1, ...): exactly the (B, 256, C, H, W) view.
    ref = -F.cross_entropy(params.unflatten(1, (256, 3)), x, reduction="none").sum((1, 2, 3))
    dist = head(params, target=x)
    torch.testing.assert_close(dist.log_prob(x), ref)
    torch.testing.assert_close(dist.log_prob(x.double()), ref)  # whole-number floats accepted
    assert dist.sigma is None
    torch.testing.assert_close(dist.base_dist.mode, params.unflatten(1, (256, 3)).argmax(1))


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_categorical_brute_force(scale):
    head = create("categorical")
    params = torch.randn(1, 256 * 2, 2, 3, dtype=torch.float64) * scale
    brute_force_check(head(params))


def test_categorical_log_prob_function_is_swappable():
    calls = []

    def spy(logits, x):
        calls.append(tuple(logits.shape))
        return categorical_log_prob(logits, x)

    head = create("categorical", log_prob_fn=spy)
    params = torch.randn(2, 256, 3, 3)
    x = torch.randint(0, 256, (2, 1, 3, 3))
    torch.testing.assert_close(head(params).log_prob(x), create("categorical")(params).log_prob(x))
    assert calls == [(2, 1, 3, 3, 256)]


# -- bitwise categorical --------------------------------------------------------------------------
def _bitwise_reference(params, x, channels):
    """Numpy: unpack the bits (LSB first) and sum Bernoulli log-probabilities."""
    logits = params.unflatten(1, (8, channels)).movedim(1, -1).numpy()  # (B, C, H, W, 8)
    bits = np.unpackbits(x.numpy().astype(np.uint8)[..., None], axis=-1, bitorder="little")
    log_p1 = -np.logaddexp(0.0, -logits)
    log_p0 = -np.logaddexp(0.0, logits)
    return np.where(bits == 1, log_p1, log_p0).sum(-1)


def test_bitwise_matches_numpy_bit_unpacking():
    head = create("bitwise_categorical")
    assert head.param_channels(3) == 24
    params = torch.randn(3, 24, 4, 4, dtype=torch.float64) * 3
    x = torch.randint(0, 256, (3, 3, 4, 4))
    dist = head(params, target=x)
    ref = _bitwise_reference(params, x, 3)
    np.testing.assert_allclose(dist.elementwise_log_prob(x).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(dist.log_prob(x).numpy(), ref.reshape(3, -1).sum(1), rtol=1e-12)


def test_bitwise_bit_zero_is_the_least_significant():
    head = create("bitwise_categorical")
    params = torch.full((1, 8, 1, 1), -30.0, dtype=torch.float64)
    params[:, 0] = 30.0  # only bit 0 on -> intensity 1
    dist = head(params)
    torch.testing.assert_close(dist.mean, torch.ones(1, 1, 1, 1, dtype=torch.float64))
    assert int(dist.base_dist.mode) == 1
    params[:, 0], params[:, 7] = -30.0, 30.0  # only bit 7 on -> 128
    assert int(head(params).base_dist.mode) == 128


@pytest.mark.parametrize("scale", [1.0, 3.0, 25.0])
def test_bitwise_brute_force(scale):
    head = create("bitwise_categorical")
    params = torch.randn(1, 8 * 2, 2, 3, dtype=torch.float64) * scale
    brute_force_check(head(params))


# -- shared -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["categorical", "bitwise_categorical", "bernoulli"])
def test_gradcheck_float64(name):
    head = create(name)
    c = 1
    shape = (1, head.param_channels(c), 1, 2)
    params = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    if head.data_kind == "unit":
        x = torch.rand(1, c, 1, 2, dtype=torch.float64)
    else:
        x = torch.tensor([[[[0, 255]]]])
    assert torch.autograd.gradcheck(lambda p: head(p, target=x).log_prob(x), (params,))


@pytest.mark.parametrize("name", ["categorical", "bitwise_categorical", "bernoulli"])
@pytest.mark.parametrize("channels", [1, 3])
def test_param_channels_agree_with_what_the_head_consumes(name, channels):
    head = create(name)
    k = head.params_per_channel()
    if head.data_kind == "unit":
        x = torch.rand(2, channels, 3, 3)
    else:
        x = torch.randint(0, 256, (2, channels, 3, 3))
    dist = head(torch.randn(2, head.param_channels(channels), 3, 3), target=x)
    assert dist.log_prob(x).shape == (2,) and dist.mean.shape == x.shape
    expected = head.param_channels(channels)
    with pytest.raises(LikelihoodInputError, match=rf"param_channels\({channels}\) = {expected}"):
        head(torch.randn(2, k * (channels + 1), 3, 3), target=x)
    if k > 1:
        with pytest.raises(LikelihoodInputError, match=f"not a multiple of {k}"):
            head(torch.randn(2, k + 1, 3, 3))


@pytest.mark.parametrize("name", ["categorical", "bitwise_categorical"])
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.full((2, 1, 3, 3), 0.5), "non-integer"),
        (torch.full((2, 1, 3, 3), 256), r"0\.\.255"),
        (torch.full((2, 1, 3, 3), -1), r"0\.\.255"),
        (torch.full((2, 1, 3, 3), 300.0), r"0\.\.255"),
    ],
)
def test_intensity_heads_reject_bad_data(name, bad, match):
    head = create(name)
    dist = head(torch.zeros(2, head.param_channels(1), 3, 3))
    with pytest.raises(LikelihoodInputError, match=match):
        dist.log_prob(bad)
    with pytest.raises(LikelihoodInputError, match=match):
        head(torch.zeros(2, head.param_channels(1), 3, 3), target=bad)


def test_prepare_target_gives_int64_intensities():
    head = create("categorical")
    images = torch.randint(0, 256, (2, 1, 3, 3), dtype=torch.uint8)
    x = head.prepare_target(images)
    assert x.dtype == torch.int64
    assert head(torch.zeros(2, 256, 3, 3), target=x).log_prob(x).shape == (2,)


# -- categorical: memory-bounded log_prob ------------------------------------------------------
def _categorical_pair(channels, chunk, batch=3, height=5, width=7, scale=5.0, seed=0):
    """(plain head, bounded head, float64 params, x) on a parameter-major layout."""
    gen = torch.Generator().manual_seed(seed)
    params = torch.randn(batch, 256 * channels, height, width, generator=gen,
                         dtype=torch.float64) * scale
    x = torch.randint(0, 256, (batch, channels, height, width), generator=gen)
    plain = create("categorical", memory="plain")
    bounded = create("categorical", memory="bounded", chunk_pixels=chunk)
    return plain, bounded, params, x


# Data elements per image: 35 (C=1), 105 (C=3). Chunks: one element, not dividing (13, 64),
# grouping whole images unevenly (100 -> 2 + 1 images for C=1), one chunk for everything.
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("chunk", [1, 13, 64, 100, 10**6, None])  # None: by device
def test_bounded_categorical_equals_plain_values_and_gradients(channels, chunk):
    plain, bounded, params, x = _categorical_pair(channels, chunk)
    p_plain = params.clone().requires_grad_()
    p_bounded = params.clone().requires_grad_()
    weights = torch.rand(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lp_plain = plain(p_plain, target=x).elementwise_log_prob(x)
    lp_bounded = bounded(p_bounded, target=x).elementwise_log_prob(x)
    assert lp_bounded.shape == x.shape and lp_bounded.dtype == torch.float64
    torch.testing.assert_close(lp_bounded, lp_plain, atol=1e-12, rtol=0)
    ref = -F.cross_entropy(params.unflatten(1, (256, channels)), x, reduction="none")
    torch.testing.assert_close(lp_bounded, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(bounded(params).log_prob(x), plain(params).log_prob(x),
                               atol=1e-11, rtol=0)
    # A non-uniform upstream gradient exercises the per-element grad_out of the backward.
    (g_plain,) = torch.autograd.grad((lp_plain * weights).sum(), p_plain)
    (g_bounded,) = torch.autograd.grad((lp_bounded * weights).sum(), p_bounded)
    assert g_bounded.shape == params.shape and g_bounded.stride() == params.stride()
    torch.testing.assert_close(g_bounded, g_plain, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("shape", "chunk"),
    [
        ((2, 256, 1, 3), 2),  # C=1, 3 elements per image, chunks of 2 (+1)
        ((1, 768, 1, 1), 2),  # C=3, 3 elements, chunks of 2 (+1)
        ((3, 256, 1, 1), 2),  # C=1, 1 element per image: images grouped 2 + 1
    ],
)
def test_bounded_categorical_gradcheck_float64(shape, chunk):
    head = create("categorical", memory="bounded", chunk_pixels=chunk)
    channels = shape[1] // 256
    params = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    x = torch.randint(0, 256, (shape[0], channels, *shape[2:]))
    x.view(-1)[0] = 255
    assert torch.autograd.gradcheck(lambda p: head(p, target=x).log_prob(x), (params,))
    weights = torch.arange(1.0, 1 + x.numel(), dtype=torch.float64).view(x.shape)
    assert torch.autograd.gradcheck(
        lambda p: head(p, target=x).elementwise_log_prob(x) * weights, (params,)
    )


def test_categorical_default_is_bounded_and_options_are_checked():
    from sigmavae.likelihoods.bounded_categorical import (
        DEFAULT_CHUNK_PIXELS,
        auto_chunk_pixels,
        bounded_categorical_log_prob,
    )
    from sigmavae.likelihoods.discrete import DEFAULT_CATEGORICAL_MEMORY

    head = create("categorical")
    assert DEFAULT_CATEGORICAL_MEMORY == "bounded"
    assert head.memory == "bounded" and head.chunk_pixels is None  # by device and size
    assert head.log_prob_fn.func is bounded_categorical_log_prob
    assert "memory='bounded'" in repr(head) and "chunk_pixels=auto" in repr(head)
    assert auto_chunk_pixels(10**6, torch.device("cpu")) == DEFAULT_CHUNK_PIXELS
    assert auto_chunk_pixels(10**6, torch.device("cuda")) == 62500  # 16 chunks on a GPU
    assert auto_chunk_pixels(100, torch.device("cuda")) == DEFAULT_CHUNK_PIXELS
    plain = create("categorical", memory="plain")
    assert plain.log_prob_fn is categorical_log_prob and plain.chunk_pixels is None
    assert create("categorical", chunk_pixels=5).chunk_pixels == 5
    with pytest.raises(ValueError, match="option memory must be 'bounded' or 'plain' or None"):
        create("categorical", memory="lazy")
    with pytest.raises(ValueError, match="memory='bounded' only"):
        create("categorical", memory="plain", chunk_pixels=8)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="positive int"):
            create("categorical", chunk_pixels=bad)
    for bad in (2.5, True):  # the wrong type: refused by the option check before the head
        with pytest.raises(ValueError, match="option chunk_pixels must be an integer or None"):
            create("categorical", chunk_pixels=bad)
    with pytest.raises(ValueError, match="not both"):
        create("categorical", log_prob_fn=categorical_log_prob, memory="plain")
    with pytest.raises(ValueError, match="positive int"):
        bounded_categorical_log_prob(torch.zeros(2, 256), torch.zeros(2, dtype=torch.long), 0)


def test_bounded_categorical_log_prob_on_other_layouts():
    """Contiguous (..., 256) logits, a single vector, non-dense (copied) logits, float x."""
    from sigmavae.likelihoods.bounded_categorical import bounded_categorical_log_prob as bounded

    gen = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(4, 5, 256, generator=gen, dtype=torch.float64),
        torch.randn(6, 256, generator=gen, dtype=torch.float64),
        torch.randn(256, generator=gen, dtype=torch.float64),
        torch.randn(4, 9, 300, generator=gen, dtype=torch.float64)[:, ::2, :256],  # not dense
    ]
    for logits in cases:
        x = torch.randint(0, 256, logits.shape[:-1], generator=gen)
        for chunk in (1, 3, 1000):
            a = logits.detach().requires_grad_()  # keeps the (possibly non-dense) strides
            b = logits.detach().clone().requires_grad_()
            lp = bounded(a, x.double(), chunk)
            ref = categorical_log_prob(b, x)
            torch.testing.assert_close(lp, ref, atol=1e-12, rtol=0)
            (ga,) = torch.autograd.grad(lp.sum(), a)
            (gb,) = torch.autograd.grad(ref.sum(), b)
            torch.testing.assert_close(ga, gb, atol=1e-12, rtol=0)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10**6])  # narrow (class-last) and wide chunks
def test_bounded_categorical_reads_channels_last_params_in_place(chunk):
    """A channels_last decoder output is read as (B*H*W, 256, C) where it lies: values and
    gradients as the plain path's (float64), the gradient in the params' own layout."""
    plain, bounded, params, x = _categorical_pair(3, chunk)
    params = params.contiguous(memory_format=torch.channels_last)
    weights = torch.rand(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for head in (plain, bounded):
        p = params.clone(memory_format=torch.preserve_format).requires_grad_()
        lp = head(p, target=x).elementwise_log_prob(x)
        grads.append((lp, *torch.autograd.grad((lp * weights).sum(), p)))
    (lp_plain, g_plain), (lp_bounded, g_bounded) = grads
    assert lp_bounded.shape == x.shape and lp_bounded.dtype == torch.float64
    torch.testing.assert_close(lp_bounded, lp_plain, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_bounded, g_plain, atol=1e-12, rtol=0)
    assert g_bounded.is_contiguous(memory_format=torch.channels_last)


def test_bounded_categorical_computes_half_params_in_float32_without_copying_them():
    """bf16 channels_last params (a bf16-mixed run's decoder output) are not upcast by the
    head: the distribution holds them as they are, log_prob is float32 and equals the plain
    path's (which upcasts the whole tensor), and the gradient is bf16 in the params' layout,
    equal to the plain path's but for a few last-bit roundings (sums in another order)."""
    plain, bounded, params, x = _categorical_pair(3, 64, scale=3.0)
    params = params.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    dist = bounded(params, target=x)
    assert dist.base_dist.logits.dtype == torch.bfloat16
    assert dist.base_dist.logits.data_ptr() == params.data_ptr()  # a view, no copy
    assert bounded.upcasts_half_params is False and plain.upcasts_half_params is False
    assert create("categorical", log_prob_fn=categorical_log_prob).upcasts_half_params
    results = []
    for head in (plain, bounded):
        p = params.clone(memory_format=torch.preserve_format).requires_grad_()
        lp = head(p, target=x).elementwise_log_prob(x)
        results.append((lp, *torch.autograd.grad(lp.sum(), p)))
    (lp_plain, g_plain), (lp_bounded, g_bounded) = results
    assert lp_bounded.dtype == torch.float32
    torch.testing.assert_close(lp_bounded, lp_plain, atol=1e-5, rtol=0)
    assert g_bounded.dtype == torch.bfloat16
    assert g_bounded.is_contiguous(memory_format=torch.channels_last)
    ulp = 2.0 ** -7 * g_plain.float().abs() + 1e-6  # one bf16 step, float32 noise of p
    assert ((g_bounded.float() - g_plain.float()).abs() <= ulp).all()
    assert (g_bounded != g_plain).float().mean() < 0.01


def test_bounded_categorical_float32_and_half_params_match_plain():
    plain, bounded, params, x = _categorical_pair(3, 64, scale=3.0)
    for dtype in (torch.float32, torch.bfloat16):
        p = params.to(dtype)
        torch.testing.assert_close(bounded(p, target=x).elementwise_log_prob(x),
                                   plain(p, target=x).elementwise_log_prob(x),
                                   atol=1e-5, rtol=0)


def test_bounded_categorical_double_backward_matches_plain():
    """``create_graph=True`` falls back to a differentiable (not bounded) backward."""
    plain, bounded, params, x = _categorical_pair(1, 2, batch=1, height=1, width=3, scale=2.0)
    assert torch.autograd.gradgradcheck(lambda p: bounded(p, target=x).log_prob(x),
                                        (params.clone().requires_grad_(),))
    direction = torch.randn_like(params)
    hvps = []
    for head in (plain, bounded):
        p = params.clone().requires_grad_()
        (grad,) = torch.autograd.grad(head(p).log_prob(x).sum(), p, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * direction).sum(), p)
        hvps.append(hvp)
    torch.testing.assert_close(hvps[1], hvps[0], atol=1e-12, rtol=0)


def _large_allocations(fn, threshold):
    """Names of the allocating ATen ops run by ``fn()`` whose output has >= ``threshold``
    elements (forward and the CPU backward, which runs on this thread)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            # Views, in-place and out= ops return an alias of an input: no new memory.
            is_alias = any(r.alias_info is not None for r in func._schema.returns)
            for o in outs:
                if isinstance(o, torch.Tensor) and o.numel() >= threshold and not is_alias:
                    seen.append(func.__name__)
            return out

    with Record():
        fn()
    return seen


def test_bounded_categorical_never_allocates_a_params_sized_temporary():
    """Beyond the gradient of ``params`` itself (one ``empty_like``), no op of log_prob + backward
    outputs a tensor with more than a chunk's ``chunk * 256`` values; the plain path does."""
    chunk = 16
    params = torch.randn(2, 768, 8, 8, requires_grad=True)  # 384 data elements per image
    x = torch.randint(0, 256, (2, 3, 8, 8))

    def call(head):
        def run():
            params.grad = None
            head(params, target=x).log_prob(x).sum().backward()

        return run

    bounded = _large_allocations(call(create("categorical", chunk_pixels=chunk)),
                                 chunk * 256 + 1)
    assert len(bounded) == 1 and bounded[0].startswith("empty"), bounded
    assert params.grad is not None
    plain = _large_allocations(call(create("categorical", memory="plain")), params.numel())
    assert len(plain) >= 3, plain  # logsumexp temporary, its backward, the gather's backward


def test_bounded_categorical_half_channels_last_allocates_only_the_gradient():
    """bf16 channels_last params: no float32 copy and no layout copy of the params, forward
    or backward; the one params-sized allocation is their (bf16) gradient."""
    chunk = 16
    params = torch.randn(2, 768, 8, 8).to(torch.bfloat16)
    params = params.contiguous(memory_format=torch.channels_last).requires_grad_()
    x = torch.randint(0, 256, (2, 3, 8, 8))

    def run():
        create("categorical", chunk_pixels=chunk)(params, target=x).log_prob(x).sum().backward()

    seen = _large_allocations(run, chunk * 256 + 1)
    assert len(seen) == 1 and seen[0].startswith("empty"), seen
    assert params.grad.dtype == torch.bfloat16
