"""Registry, argument validation and the ImageDataset container."""

from __future__ import annotations

import pickle

import pytest
import torch

from sigmavae.data import (
    CorruptImageError,
    DataError,
    DataNotFoundError,
    DataOptionError,
    ImageDataset,
    SplitError,
    UnknownDatasetError,
    dataset_names,
    describe_dataset,
    get_spec,
    load_dataset,
)

NAMES = ["bair", "celeba", "cifar10", "folder", "frey", "mnist", "npz", "smmnist", "svhn",
         "video_folder"]


def test_dataset_names():
    assert dataset_names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_describe_dataset_is_one_informative_paragraph(name):
    text = describe_dataset(name)
    assert "\n" not in text
    assert len(text) > 200
    assert "root" in text
    for option in get_spec(name).options:
        assert option in text


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownDatasetError,
                       match="valid names: bair, celeba, cifar10, folder, frey"):
        load_dataset("imagenet", "train")
    with pytest.raises(UnknownDatasetError):
        describe_dataset("frey2")


@pytest.mark.parametrize("split", ["training", "valid", "", "TEST"])
def test_bad_split(split):
    with pytest.raises(SplitError, match="valid splits: train, val, test"):
        load_dataset("frey", split)


@pytest.mark.parametrize("size", [0, -3, 2.5, "32", True])
def test_bad_image_size(size):
    with pytest.raises(DataOptionError, match="image_size"):
        load_dataset("frey", "train", image_size=size)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, "0.1"])
def test_bad_val_fraction(fraction):
    with pytest.raises(DataOptionError, match="val_fraction"):
        load_dataset("mnist", "train", val_fraction=fraction)


def test_bad_seed_and_download():
    with pytest.raises(DataOptionError, match="seed"):
        load_dataset("frey", "train", seed=1.5)
    with pytest.raises(DataOptionError, match="download"):
        load_dataset("frey", "train", download="yes")


def test_unknown_option_lists_valid_options():
    with pytest.raises(DataOptionError, match=r"unknown option\(s\) colour .*valid options: extra"):
        load_dataset("svhn", "train", colour=True)
    with pytest.raises(DataOptionError, match="valid options: none"):
        load_dataset("frey", "train", crop=True)


def test_error_hierarchy():
    assert issubclass(DataNotFoundError, FileNotFoundError)
    assert issubclass(DataNotFoundError, DataError)
    assert issubclass(DataError, ValueError)
    err = pickle.loads(pickle.dumps(CorruptImageError("a.png", "truncated")))
    assert err.path == "a.png" and "a.png" in str(err)


def test_image_dataset_container():
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).reshape(2, 3, 4, 5)
    ds = ImageDataset(
        images=images.transpose(2, 3).transpose(2, 3),
        name="x",
        split="train",
        labels=torch.tensor([3, 4], dtype=torch.int32),
    )
    assert len(ds) == 2 and ds.image_shape == (3, 4, 5)
    assert ds.images.is_contiguous() and ds.labels.dtype == torch.int64
    sub = ds.subset(1)
    assert len(sub) == 1 and sub.labels.tolist() == [3]
    assert len(ds.subset(10)) == 2
    assert "n=2" in repr(ds) and "image_shape=(3, 4, 5)" in repr(ds)
    with pytest.raises(DataOptionError):
        ds.subset(0)
    with pytest.raises(DataError, match="uint8 tensor of shape"):
        ImageDataset(images=images.float(), name="x", split="train")
    with pytest.raises(DataError, match="uint8 tensor of shape"):
        ImageDataset(images=images[0], name="x", split="train")
    with pytest.raises(DataError, match="3 labels for 2 images"):
        ImageDataset(images=images, name="x", split="train", labels=torch.zeros(3))


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("svhn", {"extra": "abc"}, r"svhn: option extra must be True or False, got 'abc' \(str\)"),
        ("svhn", {"check_md5": 1}, r"svhn: option check_md5 must be True or False, got 1 \(int\)"),
        ("cifar10", {"check_md5": "yes please"}, r"cifar10: option check_md5 must be True or"),
        ("celeba", {"crop": "abc"}, r"celeba: option crop must be an integer or None, got 'abc'"),
        ("npz", {"test_fraction": "abc"}, r"npz: option test_fraction must be a number, got 'abc'"),
        ("npz", {"layout": 4}, r"npz: option layout must be a string or None, got 4 \(int\)"),
    ],
    ids=["svhn-extra", "svhn-md5", "cifar-md5", "celeba-crop", "npz-fraction", "npz-layout"],
)
def test_option_values_are_checked_against_the_loader(tmp_path, name, options, pattern):
    # checked before any file is looked at, so an empty root is enough
    with pytest.raises(DataOptionError, match=pattern):
        load_dataset(name, "train", tmp_path / "x.npz" if name == "npz" else tmp_path, **options)


@pytest.mark.parametrize(("name", "options", "error", "match"), [
    ("nosuch", {}, UnknownDatasetError, "unknown data set 'nosuch'; valid names: bair, celeba"),
    ("frey", {"colour": 1}, DataOptionError, "unknown option(s) colour for data set 'frey'"),
    ("frey", {"split": "train"}, DataOptionError, "unknown option(s) split"),
    ("frey", {"image_size": 0}, DataOptionError, "image_size must be a positive integer"),
    ("frey", {"val_fraction": 2}, DataOptionError, "val_fraction must be in [0, 1)"),
    ("folder", {"crop": "abc"}, DataOptionError, "option crop must be True or False"),
])
def test_options_are_checked_without_reading(name, options, error, match):
    """What a training config checks before any data is read: load_dataset's own checks."""
    from sigmavae.data import check_dataset_options

    with pytest.raises(error) as info:
        check_dataset_options(name, options)
    assert match in str(info.value)
    check_dataset_options("folder", {"crop": True, "image_size": 16, "seed": 3})


def test_registering_a_data_set_and_the_shared_registry(tmp_path):
    from sigmavae.data import DATASETS, register_dataset

    def load_toy(split, root, *, image_size, download, val_fraction, seed, n: int = 3):
        return ImageDataset(images=torch.zeros(n, 1, 2, 2, dtype=torch.uint8), name="toy",
                            split=split)

    register_dataset("toy", "Three black 2x2 images.")(load_toy)
    try:
        assert "toy" in dataset_names() and DATASETS.summary("toy") == "Three black 2x2 images."
        assert register_dataset("toy", "again")(load_toy) is load_toy  # the same loader: no-op
        with pytest.raises(ValueError, match="data set 'toy' is already registered"):
            register_dataset("toy", "another")(lambda split, root, **kw: None)
        assert len(load_dataset("toy", "test", n=5)) == 5
        assert describe_dataset("toy") == "Three black 2x2 images. Options: n."
    finally:
        DATASETS.unregister("toy")
    assert "toy" not in dataset_names()
