"""Continuous heads on data that are not [0, 1] images: vectors, [-1, 1] images, standardised
features and masked sequences, against closed forms (scipy); the mean activation each data range
gets; the 8-bit-only quantities refusing other data in one line."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from sigmavae.likelihoods import (
    DoubleSquashWarning,
    GaussianNLL,
    LikelihoodInputError,
    OptimalSigmaGaussian,
    align_mask,
    create,
    gaussian_nll,
    names,
)
from sigmavae.options import OptionError

#: Options that make each continuous head's parameters exact to recompute here (no soft clips;
#: sigmas whose logs are exact in the heads' float32 buffers).
FIXED_SIGMA, LEARNED_SIGMA = math.exp(-1.25), math.exp(-0.375)
OPTIONS = {
    "fixed_sigma": {"sigma": FIXED_SIGMA},
    "learned_sigma": {"init_sigma": LEARNED_SIGMA},
    "per_pixel_sigma": {"min_log_sigma": None},
    "student_t": {"min_log_scale": None},
}


def _accepts_data_range(name: str) -> bool:
    try:
        create(name, data_range="real", **OPTIONS.get(name, {}))
    except OptionError:
        return False
    return True


#: Every registered continuous head that models real-valued data (Bernoulli is over [0, 1] only).
CONTINUOUS = [n for n in names() if create(n, **OPTIONS.get(n, {})).data_kind == "unit"
              and _accepts_data_range(n)]
OPTIMAL = [n for n in CONTINUOUS if n.startswith("optimal_sigma")]


def test_the_continuous_heads_are_found():
    assert {"gaussian", "fixed_sigma", "learned_sigma", "optimal_sigma",
            "optimal_sigma_per_image", "optimal_sigma_per_dim", "per_pixel_sigma",
            "student_t"} <= set(CONTINUOUS)
    assert "bernoulli" not in CONTINUOUS


def _head(name: str, data_range: str, **kw):
    head = create(name, data_range=data_range, **{**OPTIONS.get(name, {}), **kw}).double()
    return head.train()


def _activation(raw: np.ndarray, data_range: str) -> np.ndarray:
    return {"unit": lambda r: 1 / (1 + np.exp(-r)), "signed": np.tanh,
            "real": lambda r: r}[data_range](raw)


def _reference(name: str, params: torch.Tensor, x: torch.Tensor, data_range: str,
               mask: torch.Tensor | None = None) -> np.ndarray:
    """``log p(x)`` per element by scipy, from the parameters recomputed by hand (masked: the
    optimal sigma over the observed entries only); masked entries 0."""
    p = params.detach().numpy()
    xs = x.numpy()
    obs = (np.ones(xs.shape, bool) if mask is None
           else np.broadcast_to(align_mask(mask, x.shape).numpy(), xs.shape))
    c = xs.shape[1]
    if name in ("per_pixel_sigma", "student_t"):
        mean = _activation(p[:, :c], data_range)
    else:
        mean = _activation(p, data_range)
    sq = np.where(obs, (np.where(obs, xs, 0) - mean) ** 2, 0.0)
    if name == "gaussian":
        sigma = np.ones_like(mean)
    elif name == "fixed_sigma":
        sigma = np.full_like(mean, FIXED_SIGMA)
    elif name == "learned_sigma":
        sigma = np.full_like(mean, LEARNED_SIGMA)
    elif name == "optimal_sigma":
        sigma = np.full_like(mean, math.sqrt(sq.sum() / obs.sum()))
    elif name == "optimal_sigma_per_image":
        axes = tuple(range(1, xs.ndim))
        per = np.sqrt(sq.sum(axes, keepdims=True) / np.maximum(obs.sum(axes, keepdims=True), 1))
        sigma = np.broadcast_to(per, mean.shape)
    elif name == "optimal_sigma_per_dim":
        sigma = np.broadcast_to(np.sqrt(sq.sum(0) / obs.sum(0)), mean.shape)
    elif name == "per_pixel_sigma":
        sigma = np.exp(p[:, c:])
    else:  # student_t: location, log-scale, raw df
        df = 2.0 + F.softplus(params[:, 2 * c:]).detach().numpy()
        ref = stats.t.logpdf(xs, df, mean, np.exp(p[:, c:2 * c]))
        return np.where(obs, ref, 0.0)
    return np.where(obs, stats.norm.logpdf(xs, mean, sigma), 0.0)


def _params(head, shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape[0], head.param_channels(shape[1]), *shape[2:], generator=g,
                       dtype=torch.float64) * scale


# -- the density of the data as given --------------------------------------------------------------
@pytest.mark.parametrize("name", CONTINUOUS)
@pytest.mark.parametrize("shape", [(6, 7), (4, 2, 3, 5)], ids=["vectors", "rank4"])
def test_real_data_of_any_shape_and_scale_match_scipy(name, shape):
    head = _head(name, "real")
    assert head.mean_activation == "identity"
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 5  # standardised * 3 + 5
    params = _params(head, shape) * 2
    dist = head(params, target=x)
    lp = dist.log_prob(x)
    assert lp.shape == (shape[0],)
    ref = _reference(name, params, x, "real")
    np.testing.assert_allclose(lp.detach().numpy(), ref.reshape(shape[0], -1).sum(1), rtol=1e-9)
    np.testing.assert_allclose(dist.elementwise_log_prob(x).detach().numpy(), ref, rtol=1e-9,
                               atol=1e-12)
    assert head.bound_validity(x)[0] == (name != "optimal_sigma_per_image")


@pytest.mark.parametrize("name", CONTINUOUS)
def test_signed_images_use_tanh_and_match_scipy(name):
    head = _head(name, "signed")
    assert head.mean_activation == "tanh"
    images = torch.randint(0, 256, (3, 2, 4, 4), dtype=torch.uint8)
    x = head.prepare_target(images).double()
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    torch.testing.assert_close(x, images.double() / 255 * 2 - 1, rtol=0, atol=1e-6)
    params = _params(head, x.shape)
    dist = head(params, target=x)
    ref = _reference(name, params, x, "signed")
    np.testing.assert_allclose(dist.log_prob(x).detach().numpy(), ref.reshape(3, -1).sum(1),
                               rtol=1e-9)
    torch.testing.assert_close(head.to_unit_interval(x), (images.float() / 255), rtol=0,
                               atol=1e-6)
    torch.testing.assert_close(head.from_unit_interval(images.double() / 255), x, rtol=0,
                               atol=1e-6)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_signed_images_keep_the_eight_bit_bins_mapped_to_minus_one_one(name):
    """8-bit images in [-1, 1] keep every 8-bit quantity: intensity i is the bin
    [2 (i - 1/2) / 255 - 1, 2 (i + 1/2) / 255 - 1] (edge bins open), and its mass is the
    density's integral over it (scipy), the 256 masses summing to one."""
    head = _head(name, "signed")
    images = torch.randint(0, 256, (2, 2, 3, 3), dtype=torch.uint8)
    images[0, 0, 0] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    x = head.prepare_target(images).double()
    dist = head(_params(head, x.shape) * 0.3, target=x)
    levels = dist.intensities(x)
    assert torch.equal(levels, images.double())
    lv = levels.numpy()
    lo = np.where(lv == 0, -np.inf, 2 * (lv - 0.5) / 255 - 1)
    hi = np.where(lv == 255, np.inf, 2 * (lv + 0.5) / 255 - 1)
    base = dist.base_dist
    loc, scale = base.loc.detach().numpy(), base.scale.detach().numpy()
    if name == "student_t":
        def cdf(v):
            return stats.t.cdf(v, base.df.detach().numpy(), loc, scale)
    else:
        def cdf(v):
            return stats.norm.cdf(v, loc, scale)
    np.testing.assert_allclose(dist.bin_log_mass(levels).detach().numpy(),
                               np.log(cdf(hi) - cdf(lo)), rtol=1e-7)
    np.testing.assert_allclose(dist.bin_cdf(levels).detach().numpy(), cdf(hi), rtol=1e-7)
    all_levels = torch.arange(256).view(256, 1, 1, 1, 1).expand(256, *x.shape)
    total = dist.bin_log_mass(all_levels).exp().sum(0)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)
    assert dist.expand((3, 2)).data_range == "signed"


# -- the mean activation ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONTINUOUS)
def test_mean_activation_follows_the_declared_data_and_an_explicit_one_wins(name):
    for data_range, activation in (("unit", "sigmoid"), ("signed", "tanh"),
                                   ("real", "identity")):
        assert create(name, data_range=data_range, **OPTIONS.get(name, {})).mean_activation \
            == activation
    assert create(name, **OPTIONS.get(name, {})).mean_activation == "sigmoid"  # as before
    head = create(name, data_range="signed", mean_activation="identity",
                  **OPTIONS.get(name, {}))
    assert head.mean_activation == "identity" and head.data_range == "signed"
    with pytest.raises(OptionError, match="data_range"):
        create(name, data_range="bytes", **OPTIONS.get(name, {}))


def test_a_sigmoid_on_a_decoder_that_already_ends_in_one_warns_once():
    head = create("optimal_sigma")
    x = torch.rand(4, 3, 8, 8)
    squashed = torch.sigmoid(torch.randn(4, 3, 8, 8))
    with pytest.warns(DoubleSquashWarning, match="mean_activation='identity'"):
        head(squashed, target=x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        head(squashed, target=x)  # once per head
        create("optimal_sigma")(torch.randn(4, 3, 8, 8), target=x)  # raw logits: silent
        create("optimal_sigma", mean_activation="identity")(squashed, target=x)
        quiet = create("optimal_sigma")
        quiet.validate_args = False  # the trainer's heads never sync for it
        quiet(squashed, target=x)


def test_identity_alone_still_means_unit_data_with_a_pointer_to_data_range():
    head = create("optimal_sigma", mean_activation="identity")
    with pytest.raises(LikelihoodInputError, match=r"data_range='signed'.*'real'") as err:
        head(torch.randn(16, 7), target=torch.randn(16, 7) * 3)
    assert "\n" not in str(err.value)
    lp = create("optimal_sigma", data_range="real")(torch.randn(16, 7),
                                                   target=torch.randn(16, 7) * 3)
    assert lp.sigma.shape == ()


@pytest.mark.parametrize(("data_range", "bad", "match"), [
    ("signed", 1.5, r"\[-1, 1\]"), ("signed", -1.01, r"\[-1, 1\]"),
    ("real", float("nan"), "NaN"), ("real", float("inf"), "NaN or infinite"),
])
def test_each_range_checks_its_data(data_range, bad, match):
    head = create("gaussian", data_range=data_range)
    params = torch.zeros(2, 3)
    with pytest.raises(LikelihoodInputError, match=match):
        head(params).log_prob(torch.full((2, 3), bad))
    with pytest.raises(LikelihoodInputError, match="floating point"):
        head(params).log_prob(torch.zeros(2, 3, dtype=torch.long))
    assert head(params).log_prob(torch.full((2, 3), -0.5)).shape == (2,)


# -- the 8-bit-only quantities ---------------------------------------------------------------------
@pytest.mark.parametrize("name", CONTINUOUS)
def test_eight_bit_quantities_refuse_real_data_in_one_line(name):
    head = _head(name, "real")
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    dist = head(_params(head, x.shape), target=x)
    with pytest.raises(LikelihoodInputError, match="8-bit") as err:
        dist.intensities(x)
    assert "\n" not in str(err.value) and "data_range='real'" in str(err.value)
    off_grid = torch.rand(3, 2, 4, dtype=torch.float64)  # in [0, 1] but not k / 255
    with pytest.raises(LikelihoodInputError, match="k/255"):
        dist.intensities(off_grid)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_real_data_on_the_eight_bit_grid_keep_the_bins_of_unit_data(name):
    """A 'real' head trained on 8-bit images / 255 (the trainer's prepare_target) keeps the
    discretised ELBO: its bins are those of the same density declared 'unit'."""
    real = _head(name, "real")
    unit = _head(name, "unit", mean_activation="identity")
    images = torch.randint(0, 256, (3, 2, 4), dtype=torch.uint8)
    x = real.prepare_target(images).double()
    torch.testing.assert_close(x, unit.prepare_target(images).double())
    params = _params(real, x.shape) * 0.2 + 0.5
    dr, du = real(params, target=x), unit(params, target=x)
    levels = dr.intensities(x)
    torch.testing.assert_close(levels, images.double())
    torch.testing.assert_close(dr.bin_log_mass(levels), du.bin_log_mass(levels))
    torch.testing.assert_close(dr.log_prob(x), du.log_prob(x))


# -- masks -----------------------------------------------------------------------------------------
def _sequences(seed=0, b=5, t=6, d=3):
    """Standardised sequences (B, T, D) of lengths 6, 4, 1, 0 (fully padded) and 6, padded with
    NaN, and the per-step mask (B, T)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g, dtype=torch.float64) * 2 - 1
    lengths = torch.tensor([6, 4, 1, 0, 6])[:b]
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    x = x.masked_fill(~mask.unsqueeze(-1), float("nan"))
    return x, mask


@pytest.mark.parametrize("name", CONTINUOUS)
def test_masked_sequences_score_the_observed_steps_only(name):
    x, mask = _sequences()
    head = _head(name, "real")
    params = _params(head, x.shape).requires_grad_(True)
    dist = head(params, target=x, mask=mask)
    lp = dist.log_prob(x)
    ref = _reference(name, params, x, "real", mask)
    np.testing.assert_allclose(lp.detach().numpy(), ref.reshape(5, -1).sum(1), rtol=1e-9)
    assert float(lp[3].detach()) == 0.0  # a fully masked example contributes nothing
    assert bool((dist.elementwise_log_prob(x)[~mask] == 0).all())
    lp.sum().backward()
    assert bool(torch.isfinite(params.grad).all())  # NaN padding reaches no gradient
    c = x.shape[1]
    assert bool((params.grad[3] == 0).all())
    assert bool((params.grad[:, :c][~mask] == 0).all())


@pytest.mark.parametrize("name", OPTIMAL)
def test_masked_optimal_sigma_is_the_mse_over_the_observed_entries(name):
    x, mask = _sequences()
    head = _head(name, "real")
    mean = torch.randn(x.shape, dtype=torch.float64)
    sigma = head(mean, target=x, mask=mask).sigma
    sq = torch.where(mask.unsqueeze(-1), x - mean, 0).pow(2)
    m = mask.unsqueeze(-1).expand_as(sq).double()
    if name == "optimal_sigma":
        want = (sq.sum() / m.sum()).sqrt()
    elif name == "optimal_sigma_per_image":
        want = (sq.sum((1, 2)) / m.sum((1, 2)).clamp_min(1)).sqrt().view(-1, 1, 1)
        want[3] = (sq.sum() / m.sum()).sqrt()  # the empty example: a finite stand-in
    else:
        observed = m.sum(0) > 0  # steps 0..5 each seen by someone
        assert bool(observed.all())
        want = (sq.sum(0) / m.sum(0)).sqrt()
    torch.testing.assert_close(sigma, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", OPTIMAL)
def test_a_fully_masked_example_does_not_bias_sigma_or_its_running_estimate(name):
    x, mask = _sequences()
    mean = torch.randn(x.shape, dtype=torch.float64)
    keep = torch.tensor([0, 1, 2, 4])
    with_empty, without = _head(name, "real"), _head(name, "real")
    for step in range(3):
        d1 = with_empty(mean + step, target=x, mask=mask)
        d2 = without(mean[keep] + step, target=x[keep], mask=mask[keep])
        s1 = d1.sigma if name != "optimal_sigma_per_image" else d1.sigma[keep]
        torch.testing.assert_close(s1, d2.sigma, rtol=1e-12, atol=0)
        torch.testing.assert_close(d1.log_prob(x)[keep], d2.log_prob(x[keep]), rtol=1e-12,
                                   atol=0)
    torch.testing.assert_close(with_empty.running_var, without.running_var, rtol=1e-12, atol=0)
    with_empty.eval(), without.eval()
    if name != "optimal_sigma_per_image":
        torch.testing.assert_close(with_empty(mean, mask=mask).sigma, without(mean[keep]).sigma)


@pytest.mark.parametrize("name", OPTIMAL)
def test_the_running_estimate_averages_masked_mses(name):
    head = _head(name, "real", decay=0.5)
    x, mask = _sequences()
    history = []
    for step in range(3):
        mean = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator()
                           .manual_seed(step))
        history.append(masked_mse(mean, x, mask, name))
        head(mean, target=x, mask=mask)
    want = history[0]
    for v in history[1:]:
        want = 0.5 * want + 0.5 * v
    # (the per-dimension running variance is a float32 buffer, sized on first use)
    torch.testing.assert_close(head.running_var, want.to(head.running_var.dtype), rtol=1e-6,
                               atol=0)


def masked_mse(mean, x, mask, name):
    sq = torch.where(mask.unsqueeze(-1), x - mean, 0).pow(2)
    m = mask.unsqueeze(-1).expand_as(sq).double()
    if name == "optimal_sigma":
        return sq.sum() / m.sum()
    if name == "optimal_sigma_per_dim":
        return sq.sum(0) / m.sum(0)
    per = sq.sum((1, 2)) / m.sum((1, 2))
    seen = m.sum((1, 2)) > 0
    return seen.sum() / per[seen].reciprocal().sum()  # harmonic mean over non-empty examples


def test_per_dim_keeps_the_running_value_of_a_step_no_example_observes():
    head = _head("optimal_sigma_per_dim", "real", decay=0.5)
    x = torch.randn(4, 3, 2, dtype=torch.float64)
    mean = torch.zeros_like(x)
    head(mean, target=x)  # all observed: initialises every step
    first = head.running_var.clone()
    mask = torch.tensor([[1, 1, 0]] * 4, dtype=torch.bool)  # nobody reaches step 2
    dist = head(mean, target=x * 10, mask=mask)
    assert bool(torch.isfinite(dist.sigma).all())
    torch.testing.assert_close(head.running_var[2], first[2], rtol=0, atol=0)
    torch.testing.assert_close(head.running_var[:2], 0.5 * first[:2] + 0.5 * 100 * first[:2])


@pytest.mark.parametrize("mask_shape", [(4,), (4, 3), (4, 3, 1, 1), (1, 3, 5, 1), (4, 1, 5, 2)])
def test_masks_over_leading_dimensions_or_broadcasting(mask_shape):
    head = create("fixed_sigma", sigma=0.5, data_range="real").double()
    x = torch.randn(4, 3, 5, 2, dtype=torch.float64)
    params = torch.randn_like(x)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(mask_shape, generator=g) > 0.3
    lp = head(params, target=x, mask=mask).log_prob(x)
    full = mask.reshape(*mask_shape, *([1] * (4 - len(mask_shape)))).expand_as(x)
    elem = torch.distributions.Normal(params, 0.5).log_prob(x)
    torch.testing.assert_close(lp, torch.where(full, elem, 0).flatten(1).sum(1))
    # 0/1 masks of any dtype are the same
    torch.testing.assert_close(head(params, target=x, mask=mask.float()).log_prob(x), lp)


def test_bad_masks_are_one_clear_line():
    head = create("gaussian", data_range="real")
    x = torch.randn(4, 3, 5)
    for bad in (torch.ones(3, 4, dtype=torch.bool), torch.ones(4, 3, 5, 2, dtype=torch.bool),
                torch.ones(4, 2, 5, dtype=torch.bool)):
        with pytest.raises(LikelihoodInputError, match="mask has shape") as err:
            head(torch.zeros(4, 3, 5), target=x, mask=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(LikelihoodInputError, match="0/1"):
        head(torch.zeros(4, 3, 5), target=x, mask=torch.full((4, 3), 0.5))


def test_with_mask_and_expand_keep_the_mask():
    head = create("fixed_sigma", sigma=0.5, data_range="real").double()
    x, mask = _sequences()
    x = torch.nan_to_num(x)
    dist = head(torch.zeros_like(x))
    masked = dist.with_mask(mask)
    assert dist.mask is None and masked.mask is not None
    want = torch.where(mask.unsqueeze(-1), dist.elementwise_log_prob(x), 0).flatten(1).sum(1)
    torch.testing.assert_close(masked.log_prob(x), want)
    torch.testing.assert_close(masked.expand((2, 5)).log_prob(x), want.expand(2, 5))
    torch.testing.assert_close(masked.with_mask(None).log_prob(x), dist.log_prob(x))


def test_masked_entries_are_not_checked_but_observed_ones_are():
    head = create("gaussian", data_range="signed")
    x = torch.zeros(2, 3)
    x[0, 2] = 7.0  # outside [-1, 1], masked
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert head(torch.zeros(2, 3), target=x, mask=mask).log_prob(x).shape == (2,)
    with pytest.raises(LikelihoodInputError, match=r"\[-1, 1\]"):
        head(torch.zeros(2, 3), target=x)


def test_the_discretised_optimal_scale_honours_the_mask():
    head = create("discretized_gaussian", scale="optimal", mean_activation="identity").double()
    x = torch.randint(0, 256, (4, 2, 3))
    loc = torch.rand(4, 2, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0]], dtype=torch.bool)
    dist = head(loc, target=x, mask=mask)
    sq = torch.where(mask.unsqueeze(-1), x.double() / 255 - loc, 0).pow(2)
    want = (sq.sum() / mask.unsqueeze(-1).expand_as(sq).sum()).sqrt()
    torch.testing.assert_close(dist.sigma, want, rtol=1e-12, atol=0)
    assert float(dist.log_prob(x)[2]) == 0.0


@pytest.mark.parametrize("name", ["per_pixel_sigma", "student_t"])
def test_layout_params_of_a_sequence_decoder_matches_the_per_step_route(name):
    """(B, T, k*D) decoder outputs through ``layout_params`` give, per sequence, the sum of the
    per-step log-densities computed with the steps flattened into the batch (B*T, k*D), masks
    included; scipy gives the same Gaussian value."""
    torch.manual_seed(0)
    b, t, d = 3, 5, 4
    head = create(name, data_range="real")
    k = head.params_per_channel()
    x = torch.randn(b, t, d) * 3
    out = torch.randn(b, t, k * d)
    mask = torch.arange(t) < torch.tensor([5, 2, 1])[:, None]
    seq = head(head.layout_params(out), target=x, mask=mask).log_prob(x)
    per_step = head(out.flatten(0, 1), target=x.flatten(0, 1), mask=mask.flatten())
    expected = per_step.log_prob(x.flatten(0, 1)).view(b, t).sum(1)
    torch.testing.assert_close(seq, expected)
    if name == "per_pixel_sigma":
        dist = head(head.layout_params(out), target=x)
        loc, scale = dist.mean, dist.stddev
        ref = stats.norm(loc.numpy(), scale.numpy()).logpdf(x.numpy()).sum(axis=(1, 2))
        np.testing.assert_allclose(dist.log_prob(x).numpy(), ref, rtol=1e-5)
        assert torch.equal(loc[:, :, 0], head.mean_location(out[:, :, 0]))  # first mean


def test_layout_params_refuses_a_size_that_is_not_k_groups():
    head = create("per_pixel_sigma", data_range="real")
    with pytest.raises(LikelihoodInputError, match="not a multiple of the head's 2"):
        head.layout_params(torch.randn(2, 3, 5))
    assert head.layout_params(torch.randn(2, 4, 3), dim=1).shape == (2, 4, 3)  # already laid out


def test_per_dim_shared_over_time_is_each_features_mle_over_batch_and_steps():
    """``shared_dims=(1,)`` on ``(B, T, D)``: one sigma per feature, the MLE over every
    observed (example, step) of that feature (scipy's ``norm.fit`` with the mean fixed), and a
    running estimate that survives sequences of another length."""
    head = _head("optimal_sigma_per_dim", "real", decay=0.5, shared_dims=(1,))
    g = torch.Generator().manual_seed(3)
    scales = torch.tensor([0.01, 1.0, 30.0], dtype=torch.float64)  # features of unlike scale
    x = torch.randn(5, 7, 3, generator=g, dtype=torch.float64) * scales
    mean = torch.zeros_like(x)
    mask = torch.arange(7) < torch.tensor([7, 3, 5, 1, 6])[:, None]  # (B, T): lengths
    dist = head(mean, target=torch.where(mask[..., None], x, torch.nan), mask=mask)
    assert tuple(dist.sigma.shape) == (1, 3)
    for d in range(3):
        _, fitted = stats.norm.fit(x[..., d][mask].numpy(), floc=0.0)
        assert math.isclose(float(dist.sigma[0, d]), fitted, rel_tol=1e-10)
    first = head.running_var.clone()
    # a batch of 11 steps updates the same three running values, and eval uses them
    y = torch.randn(2, 11, 3, generator=g, dtype=torch.float64) * scales
    head(torch.zeros_like(y), target=y)
    want = 0.5 * first + 0.5 * y.pow(2).mean((0, 1), keepdim=True)[0]
    torch.testing.assert_close(head.running_var, want.to(head.running_var.dtype))
    head.eval()
    out = head(torch.zeros(1, 4, 3, dtype=torch.float64))
    torch.testing.assert_close(out.sigma, want.sqrt().to(out.sigma.dtype))


def test_per_dim_without_shared_dims_says_what_to_do_when_the_length_changes():
    head = _head("optimal_sigma_per_dim", "real")
    head(torch.zeros(2, 5, 3), target=torch.randn(2, 5, 3))
    with pytest.raises(LikelihoodInputError, match=r"shape \(5, 3\) but these data's has shape "
                                                   r"\(4, 3\).*shared_dims=\(1,\)"):
        head(torch.zeros(2, 4, 3), target=torch.randn(2, 4, 3))
    head.eval()
    with pytest.raises(LikelihoodInputError, match="shared_dims"):
        head(torch.zeros(2, 4, 3))


def test_shared_dims_per_channel_of_images_and_in_the_functional_form():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(6, 3, 4, 5, generator=g, dtype=torch.float64)
    pred = torch.rand(6, 3, 4, 5, generator=g, dtype=torch.float64)
    nll, sigma = gaussian_nll(pred, x, scope="per_dim", shared_dims=(-2, -1))
    per_channel = (x - pred).pow(2).mean((0, 2, 3)).sqrt()
    torch.testing.assert_close(sigma.flatten(), per_channel)
    want = -torch.distributions.Normal(pred, per_channel.view(3, 1, 1)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(nll, want)
    crit = GaussianNLL(scope="per_dim", shared_dims=[-2, -1])
    torch.testing.assert_close(crit(pred, x)[1], sigma)


@pytest.mark.parametrize("bad", [(0,), 1, ("time",), (True,)])
def test_bad_shared_dims_are_refused(bad):
    # (the registry's option check names the type; the head itself names the meaning)
    with pytest.raises(ValueError, match="shared_dims must be"):
        create("optimal_sigma_per_dim", shared_dims=bad)


def test_shared_dims_belong_to_the_per_dim_scope():
    with pytest.raises(ValueError, match="unknown option shared_dims"):  # not listed there
        create("optimal_sigma", shared_dims=(1,))
    with pytest.raises(ValueError, match="shared_dims is an option of scope 'per_dim'"):
        OptimalSigmaGaussian(scope="shared", shared_dims=(1,))
    with pytest.raises(ValueError, match="shared_dims is an option of sigma='optimal'"):
        GaussianNLL("learned", shared_dims=(1,))
    head = create("optimal_sigma_per_dim", shared_dims=(3,), data_range="real")
    with pytest.raises(LikelihoodInputError, match="names dimension 3, but the data have 2"):
        head(torch.zeros(2, 4, 3), target=torch.zeros(2, 4, 3))
    assert "shared_dims=(3,)" in repr(head)
