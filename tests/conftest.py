"""Fixtures shared across the test packages.

Real data comes from the project's shared folder ``../shared/data`` (beside the repository):
ask for it with the ``shared_data`` / ``shared_file`` fixtures, which skip the test cleanly
where the folder or the file is absent (a fresh clone, CI without the data).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

#: The project's shared data folder, ``../shared/data`` relative to the repository root.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ``$SIGMAVAE_CACHE`` at a folder of this test session's: nothing a test caches
    (decoded folders, extracted archives, the speed hint's timings) lands in the user's
    ``~/.cache/sigmavae`` or comes from it. Tests that need their own set it again."""
    folder = tmp_path_factory.mktemp("sigmavae-cache")
    before = os.environ.get("SIGMAVAE_CACHE")
    os.environ["SIGMAVAE_CACHE"] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop("SIGMAVAE_CACHE", None)
        else:
            os.environ["SIGMAVAE_CACHE"] = before


@pytest.fixture(scope="session")
def load_tool() -> Callable[[str], ModuleType]:
    """``load_tool("name")``: the module ``tools/name.py`` of the repository (the tools are
    scripts, not a package)."""
    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is not available")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_file(shared_data: Path) -> Callable[..., Path]:
    """``shared_file("mnist", "x.gz")``: the path of a shared data file, or skip the test."""

    def find(*parts: str) -> Path:
        path = shared_data.joinpath(*parts)
        if not path.is_file():
            pytest.skip(f"shared data file {'/'.join(parts)} not available")
        return path

    return find


#: A tiny FID feature extractor as a module file: 2x2 average pooling, 12 features for RGB.
POOL_FEATURES = """
from torch import nn


class Pool(nn.Module):
    num_features = 12

    def forward(self, x):
        return nn.functional.adaptive_avg_pool2d(x, (2, 2)).flatten(1)


def features():
    return Pool()
"""


@pytest.fixture
def pool_features(tmp_path: Path) -> str:
    """``--fid-features`` naming a 12-d pooling extractor written to a file (fast, no weights;
    pixels would mean a covariance of every pixel)."""
    path = tmp_path / "pool_features.py"
    path.write_text(POOL_FEATURES)
    return f"{path}:features"


@pytest.fixture(scope="session")
def mnist_test_root(tmp_path_factory: pytest.TempPathFactory,
                    shared_file: Callable[..., Path]) -> Path:
    """A root in torchvision's layout holding the real MNIST test files (gzipped)."""
    images = shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    labels = shared_file("mnist", "t10k-labels-idx1-ubyte.gz")
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(images, raw)
    shutil.copy(labels, raw)
    return root


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
