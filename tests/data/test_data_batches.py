"""InMemoryBatches: coverage, determinism, sharding equivalence, mid-epoch resume."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmavae.data import DataOptionError, InMemoryBatches


def ids(n):
    """A 1-d 'data set' whose examples are their own indices, so batches show the indices."""
    return torch.arange(n)


def test_each_example_once_per_epoch_and_len():
    images = torch.randint(0, 256, (103, 1, 4, 4), dtype=torch.uint8)
    loader = InMemoryBatches(images, 10, seed=5)
    assert len(loader) == 11
    for _ in range(3):
        batches = list(loader)
        assert len(batches) == 11
        assert [b.shape[0] for b in batches] == [10] * 10 + [3]
        assert all(b.dtype == torch.uint8 and b.is_contiguous() for b in batches)
        got = torch.cat(batches)
        # same multiset of rows as the data set (rows are distinct with overwhelming probability)
        assert sorted(r.numpy().tobytes() for r in got) == sorted(
            r.numpy().tobytes() for r in images
        )
    assert loader.epoch == 3 and loader.position == 0
    assert len(InMemoryBatches(images, 10, drop_last=True)) == 10


def test_epochs_are_seeded_permutations():
    a = InMemoryBatches(ids(50), 7, seed=11)
    b = InMemoryBatches(ids(50), 7, seed=11)
    first_a, second_a = torch.cat(list(a)), torch.cat(list(a))
    assert torch.equal(first_a, torch.cat(list(b)))
    assert not torch.equal(first_a, second_a)  # next epoch: a new permutation
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(11 + 1))
    assert torch.equal(second_a, expected)
    assert not torch.equal(first_a, torch.cat(list(InMemoryBatches(ids(50), 7, seed=12))))
    unshuffled = InMemoryBatches(ids(50), 7, shuffle=False)
    assert torch.equal(torch.cat(list(unshuffled)), torch.arange(50))


def test_set_epoch_like_distributed_sampler():
    loader = InMemoryBatches(ids(30), 4, seed=0)
    loader.set_epoch(5)
    epoch5 = torch.cat(list(loader))
    other = InMemoryBatches(ids(30), 4, seed=0)
    for e in range(6):
        other.set_epoch(e)  # the usual loop; set_epoch(e) after a full pass is a no-op
        batches = torch.cat(list(other))
    assert torch.equal(batches, epoch5)
    with pytest.raises(DataOptionError):
        loader.set_epoch(-1)


def run_distributed(n, batch_size, world_size, drop_last, seed, epochs=2):
    """Per step: the concatenated rank shards, and the single-process batch of the global size."""
    single = InMemoryBatches(ids(n), batch_size * world_size, drop_last=drop_last, seed=seed)
    ranks = [
        InMemoryBatches(
            ids(n), batch_size, drop_last=drop_last, seed=seed, rank=r, world_size=world_size
        )
        for r in range(world_size)
    ]
    assert all(len(r) == len(single) for r in ranks)
    steps = []
    for epoch in range(epochs):
        for loader in (single, *ranks):
            loader.set_epoch(epoch)
        for reference, *shards in zip(single, *ranks, strict=True):
            assert len({s.shape[0] for s in shards}) == 1  # equal shard sizes
            steps.append((reference, torch.cat(shards)))
    return steps


@pytest.mark.parametrize(
    ("n", "batch_size", "world_size"),
    [(64, 4, 4), (100, 8, 2), (97, 5, 3), (10, 4, 3), (7, 1, 4), (2, 3, 4)],
)
@pytest.mark.parametrize("drop_last", [False, True])
def test_union_of_shards_is_the_global_batch(n, batch_size, world_size, drop_last):
    if drop_last and n < batch_size * world_size:
        with pytest.raises(DataOptionError, match="drop_last=True"):
            InMemoryBatches(ids(n), batch_size, drop_last=True, world_size=world_size)
        return
    for reference, union in run_distributed(n, batch_size, world_size, drop_last, seed=3):
        r = reference.shape[0]
        assert torch.equal(union[:r], reference)  # exact, in order
        pad = union.shape[0] - r
        assert 0 <= pad < world_size
        if pad:  # only a kept last partial batch is padded (wrapping around the permutation)
            assert not drop_last and r < batch_size * world_size


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    batch_size=st.integers(1, 9),
    world_size=st.integers(1, 5),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_sharding_property(n, batch_size, world_size, drop_last, seed):
    if drop_last and n < batch_size * world_size:
        return
    covered = set()
    for reference, union in run_distributed(n, batch_size, world_size, drop_last, seed, epochs=1):
        assert torch.equal(union[: reference.shape[0]], reference)
        covered.update(union.tolist())
    g = batch_size * world_size
    assert len(covered) == (n // g) * g if drop_last else n


def test_state_dict_resumes_mid_epoch():
    images = torch.randint(0, 256, (45, 1, 2, 2), dtype=torch.uint8)
    a = InMemoryBatches(images, 4, seed=9)
    list(a)  # epoch 0
    for i, _ in enumerate(a):  # stop inside epoch 1, after 5 batches
        if i == 4:
            break
    state = a.state_dict()
    assert (state["epoch"], state["batch"]) == (1, 5)
    b = InMemoryBatches(images, 4, seed=9)
    b.load_state_dict(state)
    for epoch in range(1, 4):  # trainer loop: set_epoch keeps the restored position
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        got_a, got_b = list(a), list(b)
        assert len(got_a) == (len(a) - 5 if epoch == 1 else len(a))
        assert all(torch.equal(x, y) for x, y in zip(got_a, got_b, strict=True))


def test_state_saved_at_end_of_epoch_continues_with_next():
    a = InMemoryBatches(ids(12), 4, seed=1)
    batches = list(itertools.islice(iter(a), 3))  # consumed all 3 batches, generator not closed
    assert len(batches) == 3
    state = a.state_dict()
    b = InMemoryBatches(ids(12), 4, seed=1)
    b.load_state_dict(state)
    assert torch.equal(torch.cat(list(a)), torch.cat(list(b)))
    assert a.epoch == b.epoch == 2


def test_resume_on_another_world_size():
    single = InMemoryBatches(ids(40), 8, seed=2)
    it = iter(single)
    for _ in range(2):
        next(it)
    state = single.state_dict()
    shards = [InMemoryBatches(ids(40), 4, seed=2, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.load_state_dict(state)
    rest_single = list(it)
    rest_shards = [torch.cat(pair) for pair in zip(*shards, strict=True)]
    assert all(torch.equal(x, y) for x, y in zip(rest_single, rest_shards, strict=True))


def test_load_state_dict_rejects_mismatch():
    loader = InMemoryBatches(ids(40), 8, seed=2)
    with pytest.raises(DataOptionError, match="global_batch_size"):
        loader.load_state_dict(InMemoryBatches(ids(40), 4, seed=2).state_dict())
    with pytest.raises(DataOptionError, match="seed"):
        loader.load_state_dict(InMemoryBatches(ids(40), 8, seed=3).state_dict())
    with pytest.raises(DataOptionError, match="batch in"):
        loader.load_state_dict({"epoch": 0, "batch": 99})


def test_device_and_argument_errors():
    loader = InMemoryBatches(ids(9), 4, device="cpu")
    assert next(iter(loader)).device.type == "cpu"
    for kwargs in (
        {"batch_size": 0},
        {"batch_size": 2.0},
        {"batch_size": 2, "rank": 2, "world_size": 2},
        {"batch_size": 2, "world_size": 0},
        {"batch_size": 2, "seed": "1"},
    ):
        with pytest.raises(DataOptionError):
            InMemoryBatches(ids(9), **kwargs)
    with pytest.raises(DataOptionError, match="empty"):
        InMemoryBatches(ids(0), 2)
    assert math.ceil(9 / 4) == len(loader)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_stay_on_cuda():
    loader = InMemoryBatches(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), 4, device="cuda")
    assert loader.images.is_cuda and all(b.is_cuda for b in loader)
