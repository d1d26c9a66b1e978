"""Atomic, safe checkpoints: plain tensors and containers only, loaded with weights_only=True.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then
renamed over the old one (``os.replace`` is atomic on POSIX and Windows): a crash, a kill or a full
disk during the write leaves the previous checkpoint intact and loadable, and a failed write
removes its temporary file. Write failures (full disk, no permission, read-only file system) and
unreadable files (missing, empty, truncated, not a checkpoint) raise :class:`CheckpointError` with
a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import pickletools
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..messages import first_line


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or carries something unsafe to load, or could not be
    written (full disk, no permission, read-only file system)."""


#: errno values that mean "out of space" (a full disk or an exhausted quota).
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
#: errno values a folder fsync may give where the file system simply does not support it.
_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF}
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically to ``path``.

    Raises:
        CheckpointError: the file could not be written (no space left on device, permission
            denied, read-only file system, ...). The previous checkpoint at ``path``, if any, is
            left as it was and no temporary file is left behind.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CheckpointError(_write_error_message(err, path, state)) from err
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        _remove_quietly(Path(tmp))
        if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit: as they are
            raise
        os_error = _os_error_in(err)
        if os_error is None and isinstance(err, RuntimeError) and _out_of_space(path, state):
            # torch's zip writer can report a short write as its own RuntimeError
            os_error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if os_error is None:
            raise
        raise CheckpointError(_write_error_message(os_error, path, state)) from err
    try:
        _fsync_dir(path.parent)
    except OSError as err:
        if err.errno not in _FSYNC_UNSUPPORTED:
            raise CheckpointError(
                f"wrote the checkpoint {path} but could not sync its folder to disk "
                f"({_os_reason(err)}); it may not survive a power failure") from err
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``: nothing in it can run code.

    Raises:
        CheckpointError: the path is missing or not a file, the file is empty, truncated or
            corrupt, is not a PyTorch file, holds pickled objects other than tensors and plain
            containers (refused, never executed), or is a PyTorch file but not a checkpoint
            (not a dict with a ``'model'`` state dict).
    """
    path = Path(path)
    _check_readable_file(path)
    try:
        with warnings.catch_warnings():
            # plain pickles of other protocols: torch warns before it fails, we report it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_unpickling_message(path, err)) from err
    except MemoryError:
        raise
    except OSError as err:
        raise CheckpointError(f"cannot read the checkpoint {path}: {_os_reason(err)}") from err
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... on bad files
        raise CheckpointError(_unreadable_message(path, err)) from err
    _check_layout(state, path)
    return state


# -- writing ---------------------------------------------------------------------------------------
def _write_error_message(err: OSError, path: Path, state: Any) -> str:
    """One line: what went wrong writing ``path`` and what is left of the previous checkpoint."""
    previous = (f"the last good checkpoint {path} is intact" if path.is_file()
                else "no earlier checkpoint was there to replace")
    if err.errno in _NO_SPACE:
        what = ("disk quota exceeded" if err.errno == errno.EDQUOT
                else "no space left on device")
        free = _free_bytes(path.parent)
        room = "" if free is None else f", {_human_bytes(free)} free"
        return (f"{what} while writing the checkpoint {path} (needed about "
                f"{_human_bytes(_state_bytes(state))}{room}); {previous}; free some space or "
                "write the run elsewhere (--out)")
    if err.errno in (errno.EACCES, errno.EPERM):
        return (f"permission denied writing the checkpoint {path} (is the folder {path.parent} "
                f"writable?); {previous}")
    if err.errno == errno.EROFS:
        return (f"read-only file system: cannot write the checkpoint {path}; {previous}; write "
                "the run elsewhere (--out)")
    return f"could not write the checkpoint {path}: {_os_reason(err)}; {previous}"


def _os_error_in(err: BaseException) -> OSError | None:
    """The first OSError in ``err``'s chain (torch wraps a failed write in a RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _out_of_space(path: Path, state: Any) -> bool:
    free = _free_bytes(path.parent)
    return free is not None and free < _state_bytes(state)


def _remove_quietly(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # the write already failed: report that
        tmp.unlink(missing_ok=True)


def _state_bytes(state: Any) -> int:
    """Bytes of the tensor storages in ``state`` (each storage once): about the file's size."""
    seen: set[tuple[str, int]] = set()
    total = 0
    stack = [state]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            key = (str(item.device), storage.data_ptr())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set):
            stack.extend(item)
        else:
            total += 8  # numbers, strings: small
    return total + 1024  # the zip directory and the pickled structure


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _human_bytes(n: int) -> str:
    if n < 1000**2:
        return f"{max(n, 1) / 1000:.0f} KB" if n >= 1000 else f"{n} B"
    if n < 1000**3:
        return f"{n / 1000**2:.1f} MB"
    return f"{n / 1000**3:.2f} GB"


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ---------------------------------------------------------------------------------------
def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file (in a "
                              f"run folder it is checkpoints/last.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as err:
        raise CheckpointError(f"cannot read the checkpoint {path}: {_os_reason(err)}") from err
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy, or "
                              "not a checkpoint")
    if head.startswith(_ZIP_MAGIC) or head[0] == _PICKLE_PROTO:
        return  # torch's zip format or its legacy pickle format: torch.load decides
    if _looks_like_text(head):
        first = head.decode("utf-8", "replace").strip().splitlines()
        shown = first[0][:40] if first else ""
        raise CheckpointError(f"checkpoint {path} is a text file (it starts {shown!r}), not a "
                              "PyTorch checkpoint")
    raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint file (neither a torch "
                          "zip archive nor a pickle): wrong file, or corrupt")


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut by the 512-byte read
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def _unpickling_message(path: Path, err: pickle.UnpicklingError) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    unsafe = found.group(1) if found else _pickled_global(path)
    if unsafe:
        return (f"refusing to load {path}: it contains objects other than tensors and plain "
                f"containers ({unsafe}), which could run code when unpickled")
    return (f"checkpoint {path} is not a PyTorch checkpoint: a plain Python pickle or a corrupt "
            f"file (torch.load: {first_line(err.__context__ or err)})")


#: Pickle opcodes that import or call something (what a safe loader must refuse).
_IMPORTING_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "REDUCE", "OBJ", "NEWOBJ", "NEWOBJ_EX"}


def _pickled_global(path: Path, max_opcodes: int = 1_000_000) -> str | None:
    """The first class or function a pickle file would import or call, found by reading its
    opcodes (``pickletools.genops`` parses, it never executes); ``None`` if there is none or the
    file is not a readable pickle."""
    strings: list[str] = []
    try:
        with path.open("rb") as f:
            for count, (op, arg, _) in enumerate(pickletools.genops(f)):
                if op.name == "GLOBAL":
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL":
                    return ".".join(strings[-2:]) if len(strings) >= 2 else "a global"
                if op.name in _IMPORTING_OPCODES:
                    return "a pickled object"
                if isinstance(arg, str):
                    strings.append(arg)
                if count >= max_opcodes:
                    break
    except (ValueError, OSError, EOFError):
        pass
    return None


def _unreadable_message(path: Path, err: Exception) -> str:
    if isinstance(err, EOFError):
        return f"checkpoint {path} is truncated (it ends early): an interrupted write or copy"
    detail = first_line(err)
    detail = detail.split(". This is an internal miniz error")[0]  # torch's zip reader
    if isinstance(err, KeyError):
        detail = f"unexpected data ({detail})"
    return f"checkpoint {path} is corrupt or truncated: {detail}"


def _check_layout(state: Any, path: Path) -> None:
    """A sigmavae checkpoint is a dict whose ``'model'`` is a state dict (names -> tensors)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a sigmavae checkpoint: the PyTorch file holds a "
                              f"{type(state).__name__}, not a dict with a 'model' entry")
    if "model" not in state:
        keys = sorted(str(k) for k in state)
        shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        bare = all(isinstance(v, torch.Tensor) for v in state.values()) and bool(state)
        hint = " (a bare state dict? checkpoints come from sigmavae train)" if bare else ""
        raise CheckpointError(f"{path} is not a sigmavae checkpoint: no 'model' entry (its keys: "
                              f"{shown or 'none'}){hint}")
    model = state["model"]
    if not isinstance(model, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise CheckpointError(f"{path} is not a sigmavae checkpoint: its 'model' entry is a "
                              f"{type(model).__name__}, not a state dict of named tensors")


def _os_reason(err: OSError) -> str:
    return err.strerror.lower() if err.strerror else first_line(err)
