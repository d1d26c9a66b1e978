"""Fixtures shared across the test packages."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def small_disk_factory(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``make("64k")`` mounts a tmpfs of that size at a fresh folder and returns it: a real
    file system that fills up. Needs root (CI runs as root); skips where mounting is refused.
    Everything mounted is unmounted at the end of the test."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        if os.name != "posix" or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        mount = shutil.which("mount")
        if mount is None:
            pytest.skip("no mount command")
        folder = tmp_path / f"small-disk-{len(mounted)}"
        folder.mkdir()
        done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(folder)
        return folder

    try:
        yield make
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)
