"""One process per run folder: an OS advisory lock on ``OUT/.lock``.

A second process given a folder that another one is training in is refused with
:class:`RunLockedError` ("runs/x is in use by process 4711 on node3 since 2025-05-01 14:03:12").
The lock is ``fcntl.flock`` on the lock file: the kernel drops it when its holder ends in any
way (exit, crash, SIGKILL), so a killed run never leaves its folder stuck; the file itself (the
holder's PID, host and start time, for the message) may stay behind and is simply locked again.
On Windows ``msvcrt.locking`` takes its place (it too ends with the process); where neither
exists, :class:`RunLock` locks nothing.

Network file systems: Linux's NFS client turns ``flock`` into a POSIX lock the server sees, so
two nodes sharing a folder exclude each other too; other shared file systems may not.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .folder import RunFolderError

try:  # POSIX
    import fcntl
except ImportError:  # Windows (or no locking at all)
    fcntl = None  # type: ignore[assignment]
try:
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

#: The lock file's name inside the run folder (hidden: not one of the run's outputs).
LOCK_NAME = ".lock"


class RunLockedError(RunFolderError):
    """Another live process holds the run folder's lock (the message says which, where, since
    when)."""


class RunLock:
    """The lock of run folder ``folder`` (``folder/.lock``); :meth:`acquire` or ``with``.

    >>> with RunLock("runs/x"):  # RunLockedError if another process trains in runs/x
    ...     ...
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock (creating the folder if needed) and write this process's PID, host
        and time into the file; returns ``self``.

        Raises:
            RunLockedError: another process holds it.
        """
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
            if not _try_lock(fd):
                os.close(fd)
                raise RunLockedError(self._held_message())
            # A holder removes the file when it releases: if that happened between our open and
            # our lock, we locked a file no one else will open; open the new one again.
            if _same_file(fd, self.path):
                self._fd = fd
                self._write_owner()
                return self
            os.close(fd)
        raise RunLockedError(f"{self.folder}: could not take its lock file {self.path} (it keeps "
                             "being replaced by other processes)")

    def check_free(self) -> None:
        """Raise :class:`RunLockedError` if another process holds the lock now; takes nothing
        and creates nothing (a quick look before a run builds its model and data)."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:  # no lock file (or no folder): no one holds it
            return
        try:
            if not _try_lock(fd):
                raise RunLockedError(self._held_message())
            _unlock(fd)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Give the lock up and remove the file (no-op if not held). The file is removed while
        still locked, so that no other process can lock a file that is about to vanish."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):
                self.path.unlink()
        _unlock(fd)
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a trainer set up but never torn down: do not keep the folder
        with contextlib.suppress(Exception):
            self.release()

    # -- the holder's note -----------------------------------------------------------------------
    def _write_owner(self) -> None:
        assert self._fd is not None
        note = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "unix_time": time.time()}
        data = (json.dumps(note) + "\n").encode()
        with contextlib.suppress(OSError):  # the note is for messages only
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, data)

    def owner(self) -> dict[str, Any] | None:
        """What the lock file says of its holder (``pid``, ``host``, ``since``), if readable."""
        try:
            note = json.loads(self.path.read_text())
        except (OSError, ValueError):  # being written, gone, or locked against reading
            return None
        return note if isinstance(note, dict) else None

    def holder_alive(self) -> bool:
        """Whether the process the lock file's note names is alive, without trying the lock
        (a look that took it for an instant could refuse a run starting at that instant). A
        file left by a killed process names a process that is gone; a holder on another host
        cannot be checked from here and counts as alive."""
        note = self.owner()
        if not note or not isinstance(note.get("pid"), int):
            return False
        if note.get("host") != socket.gethostname():
            return True
        try:
            os.kill(note["pid"], 0)  # signal 0: does the process exist (no signal is sent)
        except ProcessLookupError:
            return False
        except PermissionError:  # it exists, as another user's
            return True
        return True

    def _held_message(self) -> str:
        note = self.owner()
        who = "another process"
        if note and "pid" in note:
            who = f"process {note['pid']} on {note.get('host', '?')} since {note.get('since', '?')}"
        return (f"{self.folder} is in use by {who} (lock file {self.path}); wait for that run to "
                "end, or train into another --out")


def _try_lock(fd: int) -> bool:
    """An exclusive, non-blocking lock on ``fd``: ``True`` if taken, ``False`` if held."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    if msvcrt is not None:  # the first byte, locked for as long as the process has it
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    return True  # no locking available: proceed unlocked


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        elif msvcrt is not None:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
