"""On-disk cache of decoded image tensors (for image folders and CelebA).

A cache entry is one ``.pt`` file holding a plain dict of tensors, ``{"images": uint8 (M, C, H, W),
"kept": int64 (M,)}``, written with :func:`torch.save` through a temporary file and
:func:`os.replace` (atomic), and read with ``torch.load(..., weights_only=True)``. Its name is a
SHA-256 of the absolute base path, every file's relative path, size and mtime, and the decoding
options, so any change to the files or options gives a new entry.

Location: the ``cache_dir`` option if given, else ``$SIGMAVAE_CACHE/<kind>``, else
``~/.cache/sigmavae/<kind>`` (``kind`` is ``"folders"`` or ``"celeba"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import decode as _decode
from .errors import CorruptImageWarning

#: Environment variable that relocates the cache root (default ``~/.cache/sigmavae``).
CACHE_ENV = "SIGMAVAE_CACHE"
#: Bump when the decoded content for the same files and options would change.
CACHE_VERSION = 1


def cache_root() -> Path:
    """``$SIGMAVAE_CACHE`` if set, else ``~/.cache/sigmavae``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sigmavae"


def cache_key(base: Path, files: Sequence[Path], options: dict[str, Any]) -> str:
    """Hex SHA-256 of the base path, each file's (relative path, size, mtime_ns), and options."""
    base = Path(base).resolve()
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"v": CACHE_VERSION, "base": str(base), "options": options}, sort_keys=True, default=str
        ).encode()
    )
    for f in files:
        st = os.stat(f)
        rel = Path(f).resolve().relative_to(base).as_posix()
        h.update(f"\n{rel}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()


def load_entry(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached dict at ``path``, or ``None`` if absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        images, kept = entry["images"], entry["kept"]
        if images.dtype != torch.uint8 or images.ndim != 4 or kept.shape != images.shape[:1]:
            raise ValueError("unexpected tensor shapes or dtypes")
    except Exception as exc:  # truncated / foreign / old file: rebuild it
        warnings.warn(
            f"ignoring unreadable cache file {path} ({exc}); decoding again", stacklevel=3
        )
        return None
    return {"images": images, "kept": kept}


def save_entry(path: Path, entry: dict[str, torch.Tensor]) -> None:
    """Write ``entry`` atomically; warn (not fail) if the cache directory is not writable."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        warnings.warn(f"could not write cache file {path}: {exc}", stacklevel=3)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def decode_cached(
    files: Sequence[Path],
    *,
    base: Path,
    kind: str,
    decode_options: dict[str, Any],
    cache: bool = True,
    cache_dir: str | Path | None = None,
    num_workers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``files`` with :func:`sigmavae.data.decode.decode_images`, through the cache.

    Returns ``(images, kept)`` as :func:`~sigmavae.data.decode.decode_images` does. With
    ``cache=False`` nothing is read or written.
    """
    if not cache:
        return _decode.decode_images(files, num_workers=num_workers, **decode_options)
    directory = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / kind
    path = directory / f"{cache_key(base, files, decode_options)}.pt"
    entry = load_entry(path)
    if entry is None:
        images, kept = _decode.decode_images(files, num_workers=num_workers, **decode_options)
        save_entry(path, {"images": images, "kept": kept})
        return images, kept
    skipped = len(files) - int(entry["kept"].numel())
    if skipped:
        warnings.warn(
            f"{skipped} of {len(files)} image files under {base} were skipped as undecodable when "
            f"the cache {path} was built",
            CorruptImageWarning,
            stacklevel=3,
        )
    return entry["images"], entry["kept"]
