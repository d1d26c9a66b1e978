"""Small helpers shared by loaders: default data root, file checks, integrity checks."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataFormatError, DataNotFoundError

#: Environment variable giving the default ``root`` of the torchvision-format data sets.
DATA_ENV = "SIGMAVAE_DATA"


def resolve_root(root: Path | None) -> Path:
    """``root`` if given, else ``$SIGMAVAE_DATA``, else ``~/.cache/sigmavae/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sigmavae" / "data"


def missing_files(paths: list[Path]) -> list[Path]:
    """The subset of ``paths`` that are not existing files."""
    return [p for p in paths if not p.is_file()]


def not_found(dataset: str, missing: list[Path], where: Path, how: str) -> DataNotFoundError:
    """A :class:`DataNotFoundError` listing missing files, where we looked, how to get them."""
    names = ", ".join(str(p) for p in missing[:6]) + (" ..." if len(missing) > 6 else "")
    return DataNotFoundError(
        f"{dataset}: missing file(s) {names} (looked in {where}). To get the data: {how}"
    )


def check_not_empty(path: Path, dataset: str, expected: str) -> None:
    """Raise :class:`DataFormatError` if ``path`` is an empty (0-byte) file.

    ``expected`` says what the file should hold, e.g. ``"a MATLAB v5 .mat file"``. An empty file
    is usually an interrupted download or copy; a clear message beats the reader's own error.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return  # missing or unreadable: the caller's reader reports it
    if size == 0:
        raise DataFormatError(
            f"{dataset}: {path} is empty (0 bytes); expected {expected} "
            "(an interrupted download or copy? get the file again)"
        )


def short(text: object, limit: int = 160) -> str:
    """``text`` as one line of at most ``limit`` characters (for quoting a reader's error)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def verify_md5(path: Path, md5: str, dataset: str) -> None:
    """Raise :class:`DataFormatError` if ``path``'s MD5 is not ``md5`` (torchvision's sums)."""
    from torchvision.datasets.utils import check_integrity

    if not check_integrity(str(path), md5):
        raise DataFormatError(
            f"{dataset}: {path} does not match the published MD5 {md5} (corrupt or different file)"
        )
