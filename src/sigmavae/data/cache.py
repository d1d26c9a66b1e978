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
import pickle
import stat
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
    """Hex SHA-256 of the base folder, each file's (relative path, size, mtime_ns), and options.

    Symbolic links are fine anywhere (the root, a sub-folder, a file): relative paths are taken
    from the paths as spelled (below ``base``, not resolved); the base is identified by its
    resolved path, and a file whose real location is not that relative path (it is, or lies under,
    a link) adds its resolved path, so re-pointing a link gives a new key. Size and mtime are the
    target's. A file that cannot be stat'ed (e.g. a broken link) enters as missing; decoding then
    reports or skips it.
    """
    lexical = os.path.abspath(base)
    real_base = os.path.realpath(base)
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"v": CACHE_VERSION, "base": real_base, "options": options},
            sort_keys=True,
            default=str,
        ).encode()
    )
    prefix = os.path.join(lexical, "")
    real_dirs: dict[str, str] = {}  # realpath of each folder, computed once per folder
    for f in files:
        path = os.path.abspath(f)
        # relative to base as spelled; a file outside base is identified by its absolute path
        rel = path[len(prefix) :] if path.startswith(prefix) else path
        try:
            lst = os.lstat(path)
            is_link = stat.S_ISLNK(lst.st_mode)
            st = os.stat(path) if is_link else lst
            stamp = f"{st.st_size}\t{st.st_mtime_ns}"
        except OSError:  # missing, or a broken link: decoding reports or skips it
            is_link, stamp = True, "missing"
        if is_link:
            real = os.path.realpath(path)
        else:
            folder, name = os.path.split(path)
            if folder not in real_dirs:
                real_dirs[folder] = os.path.realpath(folder)
            real = os.path.join(real_dirs[folder], name)
        link = "" if real == os.path.join(real_base, rel) else f"\t-> {real}"
        h.update(f"\n{rel.replace(os.sep, '/')}\t{stamp}{link}".encode())
    return h.hexdigest()


def _check_entry(entry: object, n_files: int | None, options: dict[str, Any]) -> str | None:
    """Why ``entry`` is not a valid cache entry for ``n_files`` files and ``options``, or None."""
    if not isinstance(entry, dict) or not {"images", "kept"} <= set(entry):
        return "not a dict with 'images' and 'kept'"
    images, kept = entry["images"], entry["kept"]
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        return "'images' is not a uint8 (M, C, H, W) tensor"
    if not isinstance(kept, torch.Tensor) or kept.dtype != torch.int64 or kept.ndim != 1:
        return "'kept' is not an int64 (M,) tensor"
    if kept.shape[0] != images.shape[0]:
        return f"{images.shape[0]} images but {kept.shape[0]} positions in 'kept'"
    if kept.numel() and (
        bool((kept[1:] <= kept[:-1]).any())
        or int(kept[0]) < 0
        or (n_files is not None and int(kept[-1]) >= n_files)
    ):
        return f"'kept' is not an increasing list of positions among {n_files} files"
    if n_files is not None and options.get("on_error") == "raise" and kept.numel() != n_files:
        return f"{kept.numel()} images for {n_files} files, but no file may be skipped"
    channels = options.get("channels")
    if channels is not None and images.shape[1] != channels:
        return f"images have {images.shape[1]} channels, not {channels}"
    side = options.get("image_size")
    if side is not None and tuple(images.shape[2:]) != (side, side):
        return f"images are {images.shape[2]}x{images.shape[3]}, not {side}x{side}"
    return None


def load_entry(
    path: Path, *, n_files: int | None = None, options: dict[str, Any] | None = None
) -> dict[str, torch.Tensor] | None:
    """The cached dict at ``path``, or ``None`` if absent or unusable (then it is rebuilt).

    An unusable entry (empty, truncated, not a tensor file, or holding tensors that do not fit
    ``n_files`` files decoded with ``options``) is reported with a one-line warning naming it.
    """
    if not path.is_file():
        return None
    reason = None
    entry: object = None
    try:
        if path.stat().st_size == 0:
            reason = "the file is empty (0 bytes)"
        else:
            entry = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused it, or it is not a pickle at all
        reason = "not a tensor file written by sigmavae"
    except Exception as exc:  # truncated / foreign / old file
        first = " ".join(str(exc).split()).split(". ")[0][:120]
        reason = f"truncated or corrupt: {type(exc).__name__}: {first}"
    if reason is None:
        reason = _check_entry(entry, n_files, options or {})
    if reason is not None:
        warnings.warn(
            f"ignoring unreadable cache file {path} ({reason}); decoding again", stacklevel=3
        )
        return None
    assert isinstance(entry, dict)
    return {"images": entry["images"], "kept": entry["kept"]}


def save_entry(path: Path, entry: dict[str, torch.Tensor]) -> None:
    """Write ``entry`` atomically; warn (not fail) if the cache directory is not writable."""
    tmp = None
    if path.parent.exists() and not path.parent.is_dir():
        warnings.warn(
            f"cache directory {path.parent} is a file, not a folder; nothing is cached (pass "
            "cache_dir=<folder> or cache=False)",
            stacklevel=3,
        )
        return
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
    entry = load_entry(path, n_files=len(files), options=decode_options)
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
