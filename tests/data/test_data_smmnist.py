"""Stochastic Moving MNIST: determinism, digits inside the frame, the stochastic bounce rule of
SVG's data/moving_mnist.py, and test digits disjoint from train digits (real MNIST test file)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import sigmavae.data.smmnist as smmnist
from sigmavae.data import DataNotFoundError, DataOptionError, describe_dataset, load_dataset
from sigmavae.data.transforms import resize


def test_shape_dtype_and_determinism(mnist_test_root):
    kw = {"sequences": 6, "frames": 5}
    a = load_dataset("smmnist", "train", mnist_test_root, seed=1, **kw)
    assert a.images.dtype == torch.uint8 and a.images.shape == (6, 5, 1, 64, 64)
    assert a.name == "smmnist" and a.frames == 5 and a.data_shape == (5, 1, 64, 64)
    assert torch.equal(a.images, load_dataset("smmnist", "train", mnist_test_root, seed=1,
                                              **kw).images)
    other = load_dataset("smmnist", "train", mnist_test_root, seed=2, **kw)
    assert not torch.equal(a.images, other.images)
    # test is fixed: the same for every seed, and different from train
    t1 = load_dataset("smmnist", "test", mnist_test_root, seed=1, **kw)
    t2 = load_dataset("smmnist", "test", mnist_test_root, seed=2, **kw)
    assert torch.equal(t1.images, t2.images) and not torch.equal(t1.images, a.images)
    # the defaults: 15 frames; 1,000 test sequences
    full = load_dataset("smmnist", "test", mnist_test_root)
    assert full.images.shape == (1000, 15, 1, 64, 64)


def test_generating_the_default_train_split_takes_seconds(mnist_test_root):
    start = time.perf_counter()
    train = load_dataset("smmnist", "train", mnist_test_root)  # 10,000 x 15 frames
    elapsed = time.perf_counter() - start
    assert train.images.shape == (10_000, 15, 1, 64, 64)
    assert elapsed < 30, f"{elapsed:.1f} s"  # ~2 s on one core


def test_one_digit_is_never_cut_and_stays_inside(mnist_test_root):
    moving = smmnist.smmnist_sequences("train", mnist_test_root, sequences=200, frames=20,
                                       digits=1)
    pos = moving.positions
    assert pos.shape == (200, 20, 1, 2)
    assert int(pos.min()) == 0 and int(pos.max()) == 31  # walls are reached, never passed
    pool, _ = smmnist.digit_pool("train", mnist_test_root)
    mass = pool[:, 0].double().sum((1, 2))[moving.digits[:, 0]]  # (N,)
    per_frame = moving.frames.double().sum((2, 3, 4))  # (N, T)
    torch.testing.assert_close(per_frame, mass[:, None].expand(-1, 20), rtol=0, atol=0)
    # the frame equals the digit pasted at the reported corner
    n, t = 7, 11
    y, x = pos[n, t, 0].tolist()
    expected = torch.zeros(64, 64, dtype=torch.uint8)
    expected[y:y + 32, x:x + 32] = pool[moving.digits[n, 0], 0]
    assert torch.equal(moving.frames[n, t, 0], expected)


def test_two_digits_are_summed_and_clipped(mnist_test_root):
    moving = smmnist.smmnist_sequences("val", mnist_test_root, sequences=50, frames=6, digits=2)
    pool, _ = smmnist.digit_pool("val", mnist_test_root)
    for n in range(50):
        for t in range(6):
            canvas = torch.zeros(64, 64, dtype=torch.int32)
            for d in range(2):
                y, x = moving.positions[n, t, d].tolist()
                canvas[y:y + 32, x:x + 32] += pool[moving.digits[n, d], 0].int()
            assert torch.equal(moving.frames[n, t, 0], canvas.clamp(max=255).to(torch.uint8))


def test_velocities_and_the_stochastic_bounce_rule():
    rng = np.random.default_rng(0)
    pos, vel = smmnist.trajectories(2000, 30, 2, rng)
    assert vel.min() == -4 and vel.max() == 4 and pos.min() == 0 and pos.max() == 31
    raw = pos[:, :-1] + vel[:, :-1]  # where each digit would be at the next frame
    after, new = pos[:, 1:], vel[:, 1:]
    np.testing.assert_array_equal(after, np.clip(raw, 0, 31))  # clamped back to the wall
    low, high = raw < 0, raw > 31
    hit = low | high
    hit_rows, hit_cols = hit[..., 0], hit[..., 1]
    # the column check comes last, so a column bounce always keeps its new column speed
    assert (new[..., 1][low[..., 1]] >= 1).all() and (new[..., 1][high[..., 1]] <= -1).all()
    # a row bounce keeps its new row speed unless a column bounce redrew it in the same frame
    rows_only = hit_rows & ~hit_cols
    assert (new[..., 0][low[..., 0] & ~hit_cols] >= 1).all()
    assert (new[..., 0][high[..., 0] & ~hit_cols] <= -1).all()
    # no bounce: the velocity is unchanged
    free = ~hit_rows & ~hit_cols
    np.testing.assert_array_equal(new[free], vel[:, :-1][free])
    # the bounce is stochastic: new speeds 1..4 away from the wall, all four seen, and often
    # not the mirror image of the old speed; the velocity along the wall is redrawn too
    speeds = np.abs(new[..., 1][hit_cols])
    assert set(np.unique(speeds).tolist()) == {1, 2, 3, 4}
    mirror = np.abs(new[..., 0][rows_only]) == np.abs(vel[:, :-1][..., 0][rows_only])
    assert 0.1 < mirror.mean() < 0.5  # ~1/4 by chance, never always as in a reflection
    along = new[..., 1][rows_only]
    assert set(np.unique(along).tolist()) == set(range(-4, 5))


def test_train_val_and_test_digits_are_disjoint(mnist_test_root):
    _, train = smmnist.digit_pool("train", mnist_test_root, seed=5)
    _, val = smmnist.digit_pool("val", mnist_test_root, seed=5)
    _, test = smmnist.digit_pool("test", mnist_test_root, seed=5)
    assert (train.numel(), val.numel(), test.numel()) == (8100, 900, 1000)
    sets = [set(x.tolist()) for x in (train, val, test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(sets[0] | sets[1] | sets[2]) == 10_000
    # the test pool does not depend on the seed; the sequences use only their pool's digits
    assert torch.equal(smmnist.digit_pool("test", mnist_test_root, seed=9)[1], test)
    moving = smmnist.smmnist_sequences("test", mnist_test_root, sequences=300, frames=2)
    assert int(moving.digits.max()) < 1000
    pool, _ = smmnist.digit_pool("test", mnist_test_root)
    mnist = load_dataset("mnist", "test", mnist_test_root).images
    assert torch.equal(pool, resize(mnist[test], (32, 32)))  # the held-out MNIST images


def test_both_takes_train_digits_from_the_official_train_file(mnist_test_root):
    # the shipped MNIST has only the test file: 'both' reads it for test and asks for train
    _, test = smmnist.digit_pool("test", mnist_test_root, mnist_split="both")
    assert torch.equal(test, torch.arange(10_000))
    with pytest.raises(DataNotFoundError, match=r"smmnist: the digits come from MNIST's "
                       r"official train file.*train-images-idx3-ubyte"):
        load_dataset("smmnist", "train", mnist_test_root, mnist_split="both")


def test_image_size_and_options(mnist_test_root):
    small = load_dataset("smmnist", "test", mnist_test_root, sequences=3, frames=4,
                         image_size=32)
    native = load_dataset("smmnist", "test", mnist_test_root, sequences=3, frames=4)
    assert small.images.shape == (3, 4, 1, 32, 32)
    expected = resize(native.images.reshape(12, 1, 64, 64), (32, 32)).reshape(3, 4, 1, 32, 32)
    assert torch.equal(small.images, expected)
    with pytest.raises(DataOptionError, match="option digits must be a positive integer"):
        load_dataset("smmnist", "test", mnist_test_root, digits=0)
    with pytest.raises(DataOptionError, match="option frames must be"):
        load_dataset("smmnist", "test", mnist_test_root, frames="ten")
    with pytest.raises(DataOptionError, match="mnist_split must be one of test, train, both"):
        load_dataset("smmnist", "test", mnist_test_root, mnist_split="all")
    text = describe_dataset("smmnist")
    assert "root" in text and "Options: frames, sequences, digits, mnist_split." in text


def test_missing_mnist_root_says_what_is_needed(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"smmnist: the digits come from MNIST's "
                       r"official test file, and root must be an MNIST folder: mnist: missing "
                       r"file\(s\) .*t10k-images-idx3-ubyte") as info:
        load_dataset("smmnist", "test", tmp_path)
    assert "\n" not in str(info.value) and "download=True" in str(info.value)
