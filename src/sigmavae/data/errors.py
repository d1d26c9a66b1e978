"""Exceptions raised by the data layer.

Every error is a :class:`DataError` (a :class:`ValueError`), so callers can catch one type.
Missing files raise :class:`DataNotFoundError`, which is also a :class:`FileNotFoundError`.
"""

from __future__ import annotations


class DataError(ValueError):
    """Base class of every error raised by :mod:`sigmavae.data`."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file or directory is missing. The message says where we looked and how to get it."""


class UnknownDatasetError(DataError):
    """``load_dataset`` was given a name that is not registered."""


class SplitError(DataError):
    """A split name is not one of ``train``, ``val``, ``test``, or the split cannot be formed."""


class DataOptionError(DataError):
    """A bad argument or option (``image_size``, ``val_fraction``, an unknown option, ...)."""


class DataFormatError(DataError):
    """A file exists but does not have the expected format (shape, dtype, keys, header)."""


class CorruptImageError(DataFormatError):
    """An image file could not be decoded. ``path`` names the file."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode image file {self.path!s}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # keep it picklable across processes
        return (type(self), (self.path, self.reason))


class EmptyDatasetError(DataError):
    """A data set (or one of its splits) has no examples."""


class CorruptImageWarning(UserWarning):
    """Warned (instead of raising :class:`CorruptImageError`) for each image skipped with
    ``on_error="skip"``."""
