"""Data layer: every data set decoded once into a uint8 tensor, images ``(N, C, H, W)`` or
sequences of frames ``(N, T, C, H, W)`` (``bair``, ``smmnist``, ``video_folder``).

>>> from sigmavae.data import load_dataset, InMemoryBatches
>>> train = load_dataset("frey", "train")          # shipped with the package
>>> train.images.shape, train.images.dtype
(torch.Size([1565, 1, 28, 20]), torch.uint8)
>>> batches = InMemoryBatches(train.images, batch_size=100, seed=0)
>>> len(batches)
16
"""

from .batches import InMemoryBatches
from .dataset import SPLITS, ImageDataset
from .errors import (
    CorruptImageError,
    CorruptImageWarning,
    DataError,
    DataFormatError,
    DataNotFoundError,
    DataOptionError,
    EmptyDatasetError,
    SplitError,
    UnknownDatasetError,
)
from .registry import (
    DATASETS,
    DatasetSpec,
    check_dataset_options,
    dataset_names,
    describe_dataset,
    get_spec,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "CorruptImageError",
    "CorruptImageWarning",
    "DataError",
    "DataFormatError",
    "DataNotFoundError",
    "DataOptionError",
    "DatasetSpec",
    "EmptyDatasetError",
    "ImageDataset",
    "InMemoryBatches",
    "SplitError",
    "UnknownDatasetError",
    "check_dataset_options",
    "dataset_names",
    "describe_dataset",
    "get_spec",
    "load_dataset",
    "register_dataset",
]
