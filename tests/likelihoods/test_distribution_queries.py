"""entropy, mode, cdf and icdf of every head, as far as the torch.distributions contract goes:
against torch's own Categorical/Bernoulli, scipy, and brute force over the 256 intensities; what
is not defined raises NotImplementedError with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sigmavae.likelihoods import (
    BitwiseIntensity,
    DiscretizedMixture,
    IntensityCategorical,
    LikelihoodInputError,
    StudentTWithCdf,
    UnitBernoulli,
    create,
    names,
)
from sigmavae.likelihoods.bins import FAMILIES

OPTIONS = {"fixed_sigma": {"sigma": 0.1}}
SHAPE = (3, 2, 2, 3)  # (B, C, H, W)
LEVELS = torch.arange(256)
DISCRETE = [n for n in names() if create(n, **OPTIONS.get(n, {})).data_kind == "intensity"]
CONTINUOUS = [n for n in names() if n not in DISCRETE and n != "bernoulli"]


def _dist(name: str, seed: int = 0):
    head = create(name, **OPTIONS.get(name, {})).double().train()
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = SHAPE
    params = torch.randn(b, head.param_channels(c), h, w, generator=g, dtype=torch.float64)
    if head.data_kind == "intensity":
        x = torch.randint(0, 256, SHAPE, generator=g)
    else:
        x = torch.rand(SHAPE, generator=g, dtype=torch.float64)
        x = x.round() if name == "bernoulli" else x
    return head(params, target=x), x


def _pmf_table(dist) -> torch.Tensor:
    """P(X_d = i) for every data dimension and all 256 intensities: (256, B, C, H, W), from the
    distribution's own log_prob of each level (the brute-force reference)."""
    levels = LEVELS.view(256, 1, 1, 1, 1).expand(256, *SHAPE)
    return dist.base_dist.log_prob(levels).double().exp()


# -- element-wise distributions against independent references -----------------------------------
def test_categorical_entropy_and_mode_are_torchs():
    logits = torch.randn(4, 5, 256, dtype=torch.float64) * 3
    logits[0, 0, :200] = -torch.inf  # impossible levels contribute nothing
    ours, ref = IntensityCategorical(logits), torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    assert torch.equal(ours.mode, ref.mode)


def test_categorical_with_half_logits_computes_in_float32():
    """bf16 logits are kept as given and every quantity is that of their float32 upcast."""
    logits = (torch.randn(4, 5, 256) * 3).to(torch.bfloat16)
    ours, wide = IntensityCategorical(logits), IntensityCategorical(logits.float())
    assert ours.logits.dtype == torch.bfloat16
    for query in ("probs", "mean", "variance", "entropy"):
        value = getattr(ours, query)
        value = value() if callable(value) else value
        expected = getattr(wide, query)
        expected = expected() if callable(expected) else expected
        assert value.dtype == torch.float32, query
        torch.testing.assert_close(value, expected, atol=0, rtol=0)
    x = torch.randint(0, 256, (4, 5))
    torch.testing.assert_close(ours.log_prob(x), wide.log_prob(x), atol=0, rtol=0)
    torch.testing.assert_close(ours.cdf(x), wide.cdf(x), atol=0, rtol=0)
    assert torch.equal(ours.mode, wide.mode)
    torch.manual_seed(0)
    a = ours.sample((2,))
    torch.manual_seed(0)
    assert torch.equal(a, wide.sample((2,)))


def _scipy_pmf(family: str, loc: np.ndarray, scale: np.ndarray,
               weights: np.ndarray) -> np.ndarray:
    """Bin masses (..., 256) of a discretised mixture from scipy's CDFs at the bin edges
    (edge bins open), components on the last axis of loc/scale/weights."""
    dist = stats.logistic if family == "logistic" else stats.norm
    edges = (np.arange(257) - 0.5) / 255.0
    edges[0], edges[-1] = -np.inf, np.inf
    cdf = dist.cdf((edges[:, None] - loc[..., None, :]) / scale[..., None, :])  # (..., 257, K)
    mass = np.diff(cdf, axis=-2)  # (..., 256, K)
    return (mass * weights[..., None, :]).sum(-1)


def _bases_with_pmf():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 3, 256, generator=g, dtype=torch.float64) * 2
    cat = IntensityCategorical(logits)
    cat_pmf = torch.softmax(logits, -1).numpy()
    bit_logits = torch.randn(4, 3, 8, generator=g, dtype=torch.float64) * 2
    bits = ((LEVELS.view(-1, 1) >> torch.arange(8)) & 1).double()  # (256, 8)
    p1 = torch.sigmoid(bit_logits).unsqueeze(-2)  # (4, 3, 1, 8)
    bit_pmf = (bits * p1 + (1 - bits) * (1 - p1)).prod(-1).numpy()  # (4, 3, 256)
    loc = torch.rand(4, 3, 3, generator=g, dtype=torch.float64)
    log_scale = torch.empty(4, 3, 3, dtype=torch.float64).uniform_(-5, -1, generator=g)
    mix_logits = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    mixture = DiscretizedMixture(FAMILIES["logistic"], loc, log_scale, mix_logits)
    weights = torch.softmax(mix_logits, -1).numpy()
    mix_pmf = _scipy_pmf("logistic", loc.numpy(), log_scale.exp().numpy(), weights)
    single = DiscretizedMixture(FAMILIES["gaussian"], loc[..., :1], log_scale[..., :1])
    single_pmf = _scipy_pmf("gaussian", loc[..., :1].numpy(), log_scale[..., :1].exp().numpy(),
                            np.ones((4, 3, 1)))
    return [("categorical", cat, cat_pmf), ("bitwise", BitwiseIntensity(bit_logits), bit_pmf),
            ("logistic_mixture", mixture, mix_pmf), ("discretized_gaussian", single, single_pmf)]


@pytest.mark.parametrize(("base", "pmf"), [(b, p) for _, b, p in _bases_with_pmf()],
                         ids=[n for n, _, _ in _bases_with_pmf()])
def test_entropy_mode_cdf_icdf_match_brute_force_over_the_256_intensities(base, pmf):
    """The pmf is built independently (softmax, products of bit probabilities, scipy CDFs at the
    bin edges); entropy, mode, cdf and icdf follow from it by enumeration."""
    np.testing.assert_allclose(pmf.sum(-1), 1.0, atol=1e-12)
    entropy = -(pmf * np.log(np.where(pmf > 0, pmf, 1.0))).sum(-1)
    np.testing.assert_allclose(base.entropy().numpy(), entropy, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(base.mode.numpy(), pmf.argmax(-1))
    assert base.mode.dtype == torch.int64
    cum = pmf.cumsum(-1)
    x = torch.randint(0, 256, (4, 3), generator=torch.Generator().manual_seed(5))
    want_cdf = np.take_along_axis(cum, x.numpy()[..., None], -1)[..., 0]
    np.testing.assert_allclose(base.cdf(x).numpy(), want_cdf, rtol=1e-9, atol=1e-9)
    # the quantile: the smallest intensity whose CDF reaches q (strictly inside a step, so
    # rounding of the CDF cannot move it)
    q = torch.rand(4, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    want_q = (cum[..., :-1] < q.numpy()[..., None]).sum(-1)
    np.testing.assert_array_equal(base.icdf(q).numpy(), want_q)
    assert torch.equal(base.icdf(torch.zeros(4, 3, dtype=torch.float64)),
                       torch.zeros(4, 3, dtype=torch.int64))


def test_icdf_inverts_cdf_on_levels_with_mass():
    for _, base, pmf in _bases_with_pmf():
        x = torch.as_tensor(pmf.argmax(-1))  # the mode: mass well above rounding
        assert torch.equal(base.icdf(base.cdf(x)), x), type(base).__name__


def test_bernoulli_entropy_mode_and_quantile():
    logits = torch.tensor([-2.0, 0.3, 4.0], dtype=torch.float64)
    ours, ref = UnitBernoulli(logits=logits), torch.distributions.Bernoulli(logits=logits)
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.mode, ref.mode)
    p = torch.sigmoid(logits)
    q = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    want = torch.tensor([float(1 - pi < 0.5) for pi in p.tolist()], dtype=torch.float64)
    torch.testing.assert_close(ours.icdf(q), want)
    torch.testing.assert_close(ours.icdf(ours.cdf(torch.zeros(3))), torch.zeros(3,
                                                                                dtype=torch.float64))


def test_student_t_entropy_is_scipys_and_its_icdf_says_why_not():
    df = torch.tensor([2.5, 7.0, 300.0], dtype=torch.float64)
    loc = torch.tensor([0.1, 0.5, -3.0], dtype=torch.float64)
    scale = torch.tensor([0.01, 0.2, 5.0], dtype=torch.float64)
    dist = StudentTWithCdf(df, loc, scale)
    want = stats.t.entropy(df.numpy(), loc.numpy(), scale.numpy())
    np.testing.assert_allclose(dist.entropy().numpy(), want, rtol=1e-10)
    torch.testing.assert_close(dist.mode, loc)
    with pytest.raises(NotImplementedError, match=r"no closed form.*scipy\.stats\.t\.ppf"):
        dist.icdf(torch.full((3,), 0.5, dtype=torch.float64))


# -- every head's distribution ---------------------------------------------------------------------
@pytest.mark.parametrize("name", DISCRETE)
def test_discrete_heads_entropy_sums_the_brute_force_entropy_over_the_dimensions(name):
    dist, _ = _dist(name)
    pmf = _pmf_table(dist)
    torch.testing.assert_close(pmf.sum(0), torch.ones(SHAPE, dtype=torch.float64))
    per_dim = -torch.where(pmf > 0, pmf * pmf.log(), 0).sum(0)
    torch.testing.assert_close(dist.entropy().double(), per_dim.sum((1, 2, 3)))
    assert dist.entropy().shape == (SHAPE[0],)


@pytest.mark.parametrize("name", DISCRETE)
def test_discrete_heads_mode_is_the_most_probable_intensity(name):
    dist, _ = _dist(name)
    pmf = _pmf_table(dist)
    assert dist.mode.shape == SHAPE and dist.mode.dtype == torch.int64
    assert torch.equal(dist.mode, pmf.argmax(0))
    assert bool(dist.support.check(dist.mode).all())


@pytest.mark.parametrize("name", DISCRETE)
def test_discrete_heads_cdf_per_dimension_is_the_cumulative_pmf(name):
    dist, x = _dist(name)
    cum = _pmf_table(dist).cumsum(0)
    want = cum.gather(0, x.unsqueeze(0)).squeeze(0)
    torch.testing.assert_close(dist.elementwise_cdf(x).double(), want.clamp(max=1.0),
                               rtol=1e-9, atol=1e-9)
    q = torch.rand(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.equal(dist.elementwise_icdf(q), (cum[:-1] < q).sum(0))


@pytest.mark.parametrize("name", CONTINUOUS)
def test_continuous_heads_entropy_mode_and_quantiles_follow_scipy(name):
    with torch.no_grad():  # learned_sigma's parameter: plain numbers for scipy
        dist, x = _dist(name)
    base = dist.base_dist
    if name == "student_t":
        ref = stats.t(base.df.numpy(), base.loc.numpy(), base.scale.numpy())
    else:
        ref = stats.norm(base.loc.numpy(), base.scale.expand(SHAPE).numpy())
    np.testing.assert_allclose(dist.entropy().numpy(), ref.entropy().sum((1, 2, 3)), rtol=1e-10)
    torch.testing.assert_close(dist.mode, base.loc)
    np.testing.assert_allclose(dist.elementwise_cdf(x).numpy(), ref.cdf(x.numpy()), rtol=1e-8,
                               atol=1e-12)
    q = torch.rand(SHAPE, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    if name == "student_t":
        with pytest.raises(NotImplementedError, match="no closed form"):
            dist.elementwise_icdf(q)
    else:
        np.testing.assert_allclose(dist.elementwise_icdf(q).numpy(), ref.ppf(q.numpy()),
                                   rtol=1e-9, atol=1e-12)


def test_entropy_leaves_out_the_masked_entries_like_log_prob():
    head = create("categorical").double()
    params = torch.randn(2, head.param_channels(1), 4, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    full = head(params)
    masked = head(params, mask=mask.unsqueeze(1))
    per_dim = full.base_dist.entropy()
    zero = torch.zeros((), dtype=torch.float64)
    torch.testing.assert_close(masked.entropy(), torch.stack([per_dim[0, 0, :2].sum(), zero]))
    torch.testing.assert_close(full.entropy(), per_dim.sum((1, 2)))


@pytest.mark.parametrize("name", names())
def test_cdf_and_icdf_of_a_whole_data_point_say_why_not(name):
    dist, x = _dist(name)
    with pytest.raises(NotImplementedError, match=r"elementwise_cdf\(x\)"):
        dist.cdf(x)
    with pytest.raises(NotImplementedError, match=r"not defined.*elementwise_icdf\(q\)"):
        dist.icdf(torch.full(SHAPE, 0.5, dtype=torch.float64))


def test_elementwise_icdf_checks_its_probabilities():
    dist, _ = _dist("categorical")
    with pytest.raises(LikelihoodInputError, match=r"probabilities in \[0, 1\]"):
        dist.elementwise_icdf(torch.full(SHAPE, 1.5, dtype=torch.float64))
    with pytest.raises(LikelihoodInputError, match="floating tensor of probabilities"):
        dist.elementwise_icdf(torch.zeros(SHAPE, dtype=torch.long))
    with pytest.raises(LikelihoodInputError, match="shape"):
        dist.elementwise_icdf(torch.full((3, 2, 2, 4), 0.5, dtype=torch.float64))
