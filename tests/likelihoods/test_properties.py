"""Property tests over every registered head (hypothesis): finite log-probabilities for any valid
data and parameters, and discrete heads normalised over the 256 intensities."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmavae.likelihoods import create, names
from sigmavae.options import OptionError

OPTIONS = {"fixed_sigma": {"beta": 0.01}}
DISCRETE = [n for n in names() if create(n, **OPTIONS.get(n, {})).data_kind == "intensity"]


def _head(name: str):
    head = create(name, **OPTIONS.get(name, {})).double()
    head.train()
    return head


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(names()),
    channels=st.sampled_from([1, 3]),
    scale=st.floats(1e-3, 50.0),  # raw outputs; exp(log-sigma) overflows past ~700
    seed=st.integers(0, 2**31 - 1),
    binary=st.booleans(),
)
def test_log_prob_is_finite_for_any_valid_input(name, channels, scale, seed, binary):
    head = _head(name)
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(2, head.param_channels(channels), 3, 2, generator=g,
                         dtype=torch.float64) * scale
    if head.data_kind == "unit":
        x = torch.rand(2, channels, 3, 2, generator=g, dtype=torch.float64)
        x = x.round() if binary else x
    else:
        x = torch.randint(0, 256, (2, channels, 3, 2), generator=g)
        x = x.clamp(0, 1) * 255 if binary else x
    lp = head(params, target=x).log_prob(x)
    assert lp.shape == (2,)
    assert torch.isfinite(lp).all(), (name, lp)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(DISCRETE), scale=st.floats(1e-2, 1e2),
       seed=st.integers(0, 2**31 - 1))
def test_discrete_heads_are_normalised(name, scale, seed):
    head = _head(name)
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(1, head.param_channels(1), 1, 1, generator=g,
                         dtype=torch.float64) * scale
    values = torch.arange(256).view(256, 1, 1, 1)
    dist = head(params.expand(256, -1, -1, -1), target=values)
    total = dist.log_prob(values).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=1e-6,
                               atol=1e-9)


def _takes_data_range(name: str) -> bool:
    try:
        create(name, data_range="real", **OPTIONS.get(name, {}))
    except OptionError:
        return False
    return True


CONTINUOUS = [n for n in names() if _takes_data_range(n)]


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(CONTINUOUS),
    data_range=st.sampled_from(["signed", "real"]),
    shape=st.sampled_from([(3, 4), (3, 5, 2), (2, 2, 3, 2)]),
    data_scale=st.floats(1e-2, 1e3),
    seed=st.integers(0, 2**31 - 1),
    observed=st.floats(0.0, 1.0),
)
def test_masked_log_prob_on_any_data_is_finite_and_sums_the_observed_entries(
        name, data_range, shape, data_scale, seed, observed):
    head = create(name, data_range=data_range, **OPTIONS.get(name, {})).double().train()
    g = torch.Generator().manual_seed(seed)
    if data_range == "signed":
        x = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    else:
        x = torch.randn(shape, generator=g, dtype=torch.float64) * data_scale
    params = torch.randn(shape[0], head.param_channels(shape[1]), *shape[2:], generator=g,
                         dtype=torch.float64)
    if data_range == "real":  # a decoder on the data's scale: its locations, and its log-scales
        c = shape[1]  # (parameter-major: channels c..2c-1), not raw log-scales of +-1000 nats
        params[:, :c] *= data_scale
        if head.params_per_channel() > 1:
            params[:, c:2 * c] += math.log(data_scale)
    mask = torch.rand(shape[:2], generator=g) < observed  # per example and step/channel
    padded = x.masked_fill(~mask.view(*shape[:2], *([1] * (len(shape) - 2))), float("nan"))
    dist = head(params, target=padded, mask=mask)
    lp = dist.log_prob(padded)
    assert lp.shape == (shape[0],) and bool(torch.isfinite(lp).all()), (name, lp)
    assert bool((lp[~mask.any(1)] == 0).all())  # fully masked examples contribute nothing
    elem = dist.elementwise_log_prob(padded)
    torch.testing.assert_close(lp, elem.flatten(1).sum(1))
    if not name.startswith("optimal"):  # the parameters do not depend on the data
        plain = head(params).elementwise_log_prob(torch.nan_to_num(padded))
        full = mask.view(*shape[:2], *([1] * (len(shape) - 2))).expand(shape)
        torch.testing.assert_close(lp, torch.where(full, plain, 0).flatten(1).sum(1))
