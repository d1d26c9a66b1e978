"""Every registered head returns a distribution that keeps the torch.distributions contract
(arg_constraints, support, expand, validate_args) and answers for its own 8-bit bins
(bin_log_mass / bin_cdf)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Distribution, constraints

from sigmavae.likelihoods import (
    BinnedNormal,
    BitwiseIntensity,
    DiscretizedMixture,
    ImageLikelihood,
    IntensityCategorical,
    LikelihoodInputError,
    StudentTWithCdf,
    UnitBernoulli,
    create,
    names,
)
from sigmavae.likelihoods.bins import FAMILIES

OPTIONS = {"fixed_sigma": {"sigma": 0.1}}
SHAPE = (3, 2, 4, 5)  # (B, C, H, W)


def _head(name: str, validate_args: bool | None = None):
    head = create(name, **OPTIONS.get(name, {})).double()
    head.validate_args = validate_args  # not a user option: set by the caller
    return head.train()  # optimal-sigma heads: sigma from the batch (target=x)


def _params_and_data(head, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = SHAPE
    params = torch.randn(b, head.param_channels(c), h, w, generator=g, dtype=torch.float64)
    if head.data_kind == "unit":
        x = torch.rand(SHAPE, generator=g, dtype=torch.float64)
        if head.name == "bernoulli":
            x = x.round()
    else:
        x = torch.randint(0, 256, SHAPE, generator=g)
    return params, x


def _dist(name: str, validate_args: bool | None = None) -> tuple[ImageLikelihood, torch.Tensor]:
    head = _head(name, validate_args)
    params, x = _params_and_data(head)
    return head(params, target=x), x


# -- expand ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", names())
def test_expand_gives_the_log_prob_of_the_unexpanded_distribution_broadcast(name):
    dist, x = _dist(name)
    expanded = dist.expand((2, SHAPE[0]))
    assert type(expanded) is type(dist) and type(expanded.base_dist) is type(dist.base_dist)
    assert expanded.batch_shape == (2, SHAPE[0]) and expanded.event_shape == dist.event_shape
    assert expanded.data_kind == dist.data_kind
    assert expanded.effective_beta is dist.effective_beta
    want = dist.log_prob(x).expand(2, -1)
    torch.testing.assert_close(expanded.log_prob(x), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(expanded.log_prob(x.expand(2, *SHAPE)), want, rtol=1e-12,
                               atol=1e-12)
    # the element-wise and bin quantities broadcast the same way
    levels = dist.intensities(x)
    torch.testing.assert_close(expanded.bin_log_mass(levels),
                               dist.bin_log_mass(levels).expand(2, *SHAPE))
    torch.testing.assert_close(expanded.bin_cdf(levels), dist.bin_cdf(levels).expand(2, *SHAPE))
    torch.manual_seed(0)
    assert expanded.sample().shape == (2, *SHAPE)
    assert expanded.mean.shape == (2, *SHAPE)


@pytest.mark.parametrize("name", names())
def test_expand_keeps_validate_args(name):
    dist, _ = _dist(name)
    assert dist.expand((2, SHAPE[0]))._validate_args is True
    quiet, _ = _dist(name, validate_args=False)
    assert quiet.expand((2, SHAPE[0]))._validate_args is False


def _bases() -> list[Distribution]:
    loc = torch.rand(3, 4, dtype=torch.float64)
    return [
        BinnedNormal(loc, torch.full_like(loc, 0.1)),
        StudentTWithCdf(torch.full_like(loc, 3.0), loc, torch.full_like(loc, 0.1)),
        UnitBernoulli(logits=loc),
        IntensityCategorical(torch.randn(3, 4, 256, dtype=torch.float64)),
        BitwiseIntensity(torch.randn(3, 4, 8, dtype=torch.float64)),
        DiscretizedMixture(FAMILIES["logistic"], loc.unsqueeze(-1),
                           torch.full((3, 4, 1), -3.0, dtype=torch.float64)),
        DiscretizedMixture(FAMILIES["gaussian"], torch.rand(3, 4, 2, dtype=torch.float64),
                           torch.full((3, 4, 2), -3.0, dtype=torch.float64),
                           torch.randn(3, 4, 2, dtype=torch.float64)),
    ]


@pytest.mark.parametrize("base", _bases(), ids=lambda b: type(b).__name__)
def test_every_element_wise_distribution_expands_like_torch(base):
    value = base.sample() if base.support.is_discrete else torch.rand(3, 4, dtype=torch.float64)
    expanded = base.expand((5, 3, 4))
    assert type(expanded) is type(base) and expanded.batch_shape == (5, 3, 4)
    torch.testing.assert_close(expanded.log_prob(value), base.log_prob(value).expand(5, 3, 4))
    torch.testing.assert_close(expanded.cdf(value), base.cdf(value).expand(5, 3, 4))
    assert expanded.sample().shape == (5, 3, 4)


# -- arg_constraints and support -----------------------------------------------------------------
@pytest.mark.parametrize("base", _bases(), ids=lambda b: type(b).__name__)
def test_parameters_satisfy_their_arg_constraints_and_samples_the_support(base):
    assert base.arg_constraints, "arg_constraints must name the parameters"
    for param, constraint in base.arg_constraints.items():
        assert bool(constraint.check(getattr(base, param)).all()), param
    torch.manual_seed(0)
    assert bool(base.support.check(base.sample()).all())


@pytest.mark.parametrize("make", [
    lambda bad: IntensityCategorical(bad.unsqueeze(-1).expand(3, 256), validate_args=True),
    lambda bad: BitwiseIntensity(bad.unsqueeze(-1).expand(3, 8), validate_args=True),
    lambda bad: DiscretizedMixture(FAMILIES["logistic"], bad.unsqueeze(-1),
                                   torch.zeros(3, 1), validate_args=True),
    lambda bad: StudentTWithCdf(torch.ones(3), bad, torch.ones(3), validate_args=True),
    lambda bad: BinnedNormal(bad, torch.ones(3), validate_args=True),
], ids=["categorical", "bitwise", "mixture", "student_t", "normal"])
def test_validate_args_checks_the_parameters_like_torch(make):
    make(torch.zeros(3))  # fine
    with pytest.raises(ValueError, match="Expected parameter"):
        make(torch.tensor([0.0, float("nan"), 1.0]))


@pytest.mark.parametrize("name", names())
def test_support_holds_the_data_as_an_event(name):
    dist, x = _dist(name)
    assert isinstance(dist.support, constraints.independent)
    assert dist.support.event_dim == len(dist.event_shape)
    assert bool(dist.support.check(x).all())
    assert dist.support.is_discrete == (dist.data_kind == "intensity")
    if name == "bernoulli":  # log_prob is evaluated on [0, 1], so that is its support
        assert not bool(dist.support.check(torch.full(SHAPE, 2.0, dtype=torch.float64)).any())


# -- validate_args ---------------------------------------------------------------------------------
def _bad_data(data_kind: str) -> list[tuple[torch.Tensor, str]]:
    if data_kind == "unit":
        return [(torch.full(SHAPE, 1.5, dtype=torch.float64), r"\[0, 1\]"),
                (torch.zeros(SHAPE, dtype=torch.uint8), "floating point"),
                (torch.full(SHAPE, float("nan"), dtype=torch.float64), "NaN")]
    return [(torch.full(SHAPE, 0.5, dtype=torch.float64), "non-integer"),
            (torch.full(SHAPE, 256), r"0\.\.255"),
            (torch.full(SHAPE, -1), r"0\.\.255")]


@pytest.mark.parametrize("name", names())
def test_validate_args_rejects_bad_data_with_clear_errors(name):
    head = _head(name, validate_args=True)
    params, x = _params_and_data(head)
    dist = head(params, target=x)
    assert head.validate_args is True and head.validates() and dist._validate_args
    for bad, match in _bad_data(head.data_kind):
        with pytest.raises(LikelihoodInputError, match=match):
            dist.log_prob(bad)
        with pytest.raises(LikelihoodInputError, match=match):
            dist.elementwise_log_prob(bad)
        with pytest.raises(LikelihoodInputError, match=match):
            head(params, target=bad)
    with pytest.raises(LikelihoodInputError, match="shape"):
        dist.log_prob(x[..., :-1])
    with pytest.raises(LikelihoodInputError, match=r"intensities must hold integer intensities"):
        dist.bin_log_mass(torch.full(SHAPE, 256))
    with pytest.raises(LikelihoodInputError, match="non-integer"):
        dist.bin_cdf(torch.full(SHAPE, 0.5, dtype=torch.float64))


@pytest.mark.parametrize("name", names())
def test_validate_args_false_skips_the_checks(name):
    head = _head(name, validate_args=False)
    params, _ = _params_and_data(head)
    bad = _bad_data(head.data_kind)[0][0]
    dist = head(params, target=bad)  # not checked
    assert dist._validate_args is False
    assert dist.log_prob(bad).shape == (SHAPE[0],)  # a number (maybe nonsense), no error
    # the attribute is settable: the trainer switches the checks off on a built head
    head = _head(name)
    assert head.validate_args is None and head.validates()  # None: torch's default (on)
    head.validate_args = False
    assert head(params, target=bad).log_prob(bad).shape == (SHAPE[0],)


def test_validate_args_none_follows_the_torch_default():
    head = _head("gaussian")
    params, _ = _params_and_data(head)
    bad = torch.full(SHAPE, 1.5, dtype=torch.float64)
    Distribution.set_default_validate_args(False)
    try:
        assert not head.validates()
        assert head(params, target=bad).log_prob(bad).shape == (SHAPE[0],)
    finally:
        Distribution.set_default_validate_args(True)
    with pytest.raises(LikelihoodInputError):
        head(params).log_prob(bad)


def test_the_old_validate_flag_is_gone_with_a_pointer():
    head = create("gaussian")
    with pytest.raises(AttributeError, match="validate_args"):
        head.validate = False
    for old in ("validate", "validate_args"):  # set by the caller, never a user option
        with pytest.raises(ValueError, match=f"unknown option {old}"):
            create("gaussian", **{old: False})


# -- the 8-bit bins --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", names())
def test_bin_masses_sum_to_one_and_agree_with_bin_cdf(name):
    """All 256 intensities scored against one distribution (broadcast over the batch)."""
    head = _head(name)
    g = torch.Generator().manual_seed(1)
    params = torch.randn(1, head.param_channels(2), 1, 3, generator=g, dtype=torch.float64)
    x = torch.randint(0, 256, (1, 2, 1, 3), generator=g)
    target = x / 255.0 if head.data_kind == "unit" else x
    if name == "bernoulli":
        target = target.round()
    dist = head(params, target=target)
    levels = torch.arange(256).view(256, 1, 1, 1).expand(256, 2, 1, 3)
    log_mass = dist.bin_log_mass(levels)
    assert log_mass.shape == levels.shape and bool(torch.isfinite(log_mass).all())
    mass = log_mass.double().exp()
    torch.testing.assert_close(mass.sum(0), torch.ones(2, 1, 3, dtype=torch.float64),
                               rtol=0, atol=1e-6)
    cdf = dist.bin_cdf(levels).double()
    assert bool((cdf[1:] >= cdf[:-1] - 1e-12).all())  # non-decreasing
    torch.testing.assert_close(cdf, mass.cumsum(0).clamp(max=1), rtol=0, atol=1e-6)
    torch.testing.assert_close(cdf[-1], torch.ones_like(cdf[-1]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in names() if create(n, **OPTIONS.get(n, {}))
                                  .data_kind == "intensity"])
def test_heads_over_intensities_give_their_own_pmf_and_cdf(name):
    dist, x = _dist(name)
    torch.testing.assert_close(dist.bin_log_mass(x), dist.elementwise_log_prob(x))
    torch.testing.assert_close(dist.bin_cdf(x), dist.elementwise_cdf(x))
    assert dist.intensities(x) is x


def test_continuous_bins_follow_the_cdf_at_the_bin_edges():
    dist, x = _dist("learned_sigma")
    levels = dist.intensities(x)
    assert levels.dtype == torch.float64
    torch.testing.assert_close(levels, torch.round(x * 255))
    hi = torch.where(levels >= 255, torch.ones_like(x), dist.base_dist.cdf((levels + 0.5) / 255))
    torch.testing.assert_close(dist.bin_cdf(levels), hi)
    lo = torch.where(levels <= 0, torch.zeros_like(x), dist.base_dist.cdf((levels - 0.5) / 255))
    torch.testing.assert_close(dist.bin_log_mass(levels), (hi - lo).log())


def test_a_foreign_base_with_a_cdf_gets_the_generic_bins():
    """A user's head may wrap any torch distribution; the bins then come from its cdf."""
    loc = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    dist = ImageLikelihood(torch.distributions.Laplace(loc, 0.05), "unit")
    levels = torch.arange(256).view(256, 1, 1, 1).expand(256, 1, 3, 3)
    base = torch.distributions.Laplace(loc[:1].expand(256, -1, -1, -1), 0.05)
    wide = ImageLikelihood(base, "unit")
    total = wide.bin_log_mass(levels).exp().sum(0)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-9)
    assert dist.bin_cdf(torch.full((2, 1, 3, 3), 255)).eq(1).all()
