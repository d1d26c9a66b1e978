"""Split carving and the batched resize / crop helpers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmavae.data import DataOptionError, SplitError
from sigmavae.data.splits import train_val_indices, train_val_test_indices
from sigmavae.data.transforms import center_crop, resize


@settings(max_examples=50, deadline=None)
@given(n=st.integers(2, 500), fraction=st.floats(0.01, 0.5), seed=st.integers(0, 10**6))
def test_train_val_partition(n, fraction, seed):
    train = train_val_indices(n, "train", fraction, seed)
    val = train_val_indices(n, "val", fraction, seed)
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(n))
    assert len(val) == max(1, round(n * fraction))
    assert torch.equal(val, val.sort().values)
    assert torch.equal(val, train_val_indices(n, "val", fraction, seed))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(3, 300), seed=st.integers(0, 100))
def test_train_val_test_partition(n, seed):
    parts = [train_val_test_indices(n, s, 0.1, 0.1, seed) for s in ("train", "val", "test")]
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(n))
    assert torch.equal(parts[2], train_val_test_indices(n, "test", 0.1, 0.1, seed + 1))


def test_carving_needs_something_left():
    with pytest.raises(SplitError, match="nothing would be left"):
        train_val_indices(1, "train", 0.5, 0)


def test_resize_and_crop():
    x = torch.full((3, 1, 10, 12), 77, dtype=torch.uint8)
    y = resize(x, (5, 4))
    assert y.shape == (3, 1, 5, 4) and y.dtype == torch.uint8 and bool((y == 77).all())
    ramp = torch.arange(8, dtype=torch.uint8).repeat(1, 1, 8, 1) * 30
    half = resize(ramp, (8, 4))
    row = half[0, 0, 0].tolist()  # triangle filter (1, 3, 3, 1) / 8 inside, renormalised at edges
    assert row[1:3] == [75, 135] and row[0] + row[3] == 210
    assert resize(x, (10, 12)).data_ptr() == x.data_ptr()
    z = torch.arange(5 * 7, dtype=torch.uint8).reshape(1, 1, 5, 7)
    assert center_crop(z, (3, 3))[0, 0].tolist() == [[9, 10, 11], [16, 17, 18], [23, 24, 25]]
    with pytest.raises(DataOptionError, match="crop must fit"):
        center_crop(z, (6, 6))
    with pytest.raises(DataOptionError, match="uint8"):
        resize(x.float(), (2, 2))
