"""Deterministic carving of validation / test splits out of a larger split.

All carving uses ``torch.randperm`` with a CPU :class:`torch.Generator` seeded explicitly, so it is
identical across runs and machines (for a given torch version). Returned indices are sorted, so
each split keeps the original order of the files / arrays.
"""

from __future__ import annotations

import torch

from .errors import DataOptionError, SplitError

#: Seed of the permutation that carves a *test* split where a set has none. It is fixed in code
#: (not the user's ``seed``) so the test set never changes between experiments.
TEST_CARVE_SEED = 1_234_567


def check_fraction(name: str, value: float) -> float:
    """Validate a split fraction in ``[0, 1)``; returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataOptionError(f"{name} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise DataOptionError(f"{name} must be in [0, 1), got {value}")
    return value


def split_count(n: int, fraction: float) -> int:
    """Examples carved out of ``n`` for ``fraction``: ``round(n * fraction)``, at least 1 if > 0."""
    k = round(n * fraction)
    if fraction > 0 and k == 0:
        k = 1
    return k


def carve(
    n: int, fraction: float, seed: int, *, what: str = "val"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into ``(rest, carved)`` index tensors (int64, sorted, disjoint).

    ``carved`` holds ``split_count(n, fraction)`` indices: the first ones of
    ``torch.randperm(n)`` under a generator seeded with ``seed``; ``rest`` holds the others.

    Raises:
        SplitError: if nothing would be left in ``rest``.
    """
    k = split_count(n, fraction)
    if k >= n:
        raise SplitError(
            f"cannot carve a {what} split of {k} examples out of {n}: nothing would be left; "
            f"lower the {what} fraction or add data"
        )
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)
    carved, _ = torch.sort(perm[:k])
    rest, _ = torch.sort(perm[k:])
    return rest, carved


def train_val_indices(n: int, split: str, val_fraction: float, seed: int) -> torch.Tensor:
    """Indices (into an official train split of ``n`` examples) of our ``train`` or ``val`` split.

    ``val`` is ``round(n * val_fraction)`` examples chosen by ``seed``; ``train`` is the rest, so
    the two are disjoint and together are the official train split.
    """
    rest, carved = carve(n, val_fraction, seed, what="val")
    if split == "val":
        if carved.numel() == 0:
            raise SplitError(
                "split 'val' is empty because val_fraction=0; pass val_fraction > 0 "
                "(e.g. 0.1) to carve a validation split from the official train split"
            )
        return carved
    return rest


def train_val_test_indices(
    n: int, split: str, val_fraction: float, test_fraction: float, seed: int
) -> torch.Tensor:
    """Indices of ``split`` for a collection of ``n`` examples that has no official splits.

    ``test`` is ``round(n * test_fraction)`` examples chosen by the fixed :data:`TEST_CARVE_SEED`
    (independent of ``seed``); ``val`` is ``round(m * val_fraction)`` of the remaining ``m``,
    chosen by ``seed``; ``train`` is the rest.
    """
    if test_fraction <= 0:
        raise SplitError("cannot carve a test split with test_fraction=0; pass test_fraction > 0")
    rest, test = carve(n, test_fraction, TEST_CARVE_SEED, what="test")
    if split == "test":
        return test
    sub = train_val_indices(int(rest.numel()), split, val_fraction, seed)
    return rest[sub]
