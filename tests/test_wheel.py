"""The package as a user installs it: build the sdist and the wheel, install the wheel into a
fresh virtual environment, and from a folder outside the repository run the quick start
(``sigmavae --version``, list the configs, train a packaged config by name, evaluate, sample).

How, and why so:

* The build runs on a copy of the source tree (``pyproject.toml``, ``README.md``, ``LICENSE``,
  ``src/``) in ``tmp_path``: setuptools writes ``build/`` and ``*.egg-info`` into the tree it
  builds, and a stale ``build/lib`` could hand the wheel files that are gone from ``src``. It is
  ``python -m build --no-isolation`` (the wheel is built from the sdist, as PyPI users get it),
  with this environment's setuptools (the ``dev`` extra has ``build`` and ``setuptools>=77``), so
  nothing is downloaded.
* The venv is made without pip and sees this environment's dependencies (torch and the rest)
  through a ``.pth`` file listing this environment's site-packages, so torch is not installed
  again; the wheel itself is installed by ``pip --python VENV install --no-deps``. Path lines of
  a ``.pth`` file do not run that folder's own ``.pth`` files, so a development (editable)
  install of sigmavae there stays invisible: the test checks that ``sigmavae`` is imported from
  the venv and that every file under ``src/sigmavae`` is in the wheel.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import sigmavae

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sigmavae"


def _run(args: list[str | Path], cwd: Path, timeout: float = 300) -> str:
    """Run a command with no ``PYTHONPATH``; its stdout (stderr appended after a line
    ``--- stderr``), or a failure showing both streams."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, (f"{' '.join(map(str, args))} exited {done.returncode}\n"
                                  f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return f"{done.stdout}--- stderr\n{done.stderr}"


def _stdout(output: str) -> str:
    return output.partition("--- stderr\n")[0]


def _package_files() -> set[str]:
    """Every file under ``src/sigmavae``, as the wheel names it (``sigmavae/...``)."""
    return {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The built wheel and the build's output."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    log = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist",
                source], cwd=tmp)
    (found,) = (tmp / "dist").glob("sigmavae-*.whl")
    return found, log


def test_the_build_has_no_deprecation_warnings(wheel: tuple[Path, str]) -> None:
    """The metadata is in the form current setuptools wants (an SPDX ``license``,
    ``license-files``): a deprecated form is a build that stops working on a date."""
    _, log = wheel
    assert "deprecat" not in log.lower(), log


def test_the_wheel_holds_the_package_and_its_files(wheel: tuple[Path, str]) -> None:
    path, _ = wheel
    names = set(zipfile.ZipFile(path).namelist())
    in_package = {n for n in names if n.startswith("sigmavae/")}
    # every module and data file of the source: configs, Frey Face, published tables, py.typed
    assert in_package == _package_files()
    for needed in ("sigmavae/py.typed", "sigmavae/configs/demo-frey.yaml",
                   "sigmavae/data/assets/frey_rawface.mat", "sigmavae/experiments/published.csv"):
        assert needed in names
    info = f"sigmavae-{sigmavae.__version__}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(path).read(f"{info}/METADATA").decode()
    assert f"Version: {sigmavae.__version__}\n" in metadata
    assert "License-Expression: MIT\n" in metadata
    assert "Classifier: Typing :: Typed\n" in metadata
    assert "Project-URL: Repository, https://" in metadata


def test_quick_start_from_the_installed_wheel(wheel: tuple[Path, str], tmp_path: Path) -> None:
    """Installed into a fresh venv and used from a folder outside the repository."""
    path, _ = wheel
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(_stdout(_run([python, "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)).strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_sigmavae_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--no-cache-dir", "--disable-pip-version-check", "--quiet", path], cwd=tmp_path)
    sigmavae_cli = venv / "bin" / "sigmavae"  # the console script pip wrote from the wheel
    user = tmp_path / "elsewhere"  # not the repository: nothing resolves against it
    user.mkdir()

    # `import sigmavae` is light (no torch): where it comes from and the installed metadata
    where = _stdout(_run([python, "-c", "import importlib.metadata as m, sigmavae; "
                          "print(sigmavae.__file__); print(m.version('sigmavae'))"], cwd=user))
    module, installed = where.split()
    assert Path(module).is_relative_to(venv), f"sigmavae imported from {module}"
    assert installed == sigmavae.__version__

    version = _stdout(_run([sigmavae_cli, "--version"], cwd=user))
    assert version.strip() == f"sigmavae {sigmavae.__version__}"

    listing = _stdout(_run([sigmavae_cli, "configs"], cwd=user))
    shipped = sorted(p.stem for p in (PACKAGE / "configs").glob("*.yaml"))
    assert [line.split()[0] for line in listing.splitlines()] == shipped

    _run([sigmavae_cli, "train", "--config", "demo-frey", "--epochs", "1", "--train-subset", "128",
          "--val-subset", "64", "--num-samples", "4", "--no-progress", "--out", "run"], cwd=user)
    checkpoint = user / "run" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    assert json.loads((user / "run" / "final.json").read_text())["epoch"] == 1
    config = json.loads((user / "run" / "config.json").read_text())
    assert (config["data"], config["log_every_n_steps"]) == ("frey", 13)  # demo-frey's keys

    _run([sigmavae_cli, "eval", checkpoint, "--metrics", "elbo", "--limit", "32",
          "--out", "report.json"], cwd=user)
    elbo = json.loads((user / "report.json").read_text())["metrics"]["elbo"]
    assert elbo["available"] and math.isfinite(elbo["single_sample"]["neg_elbo_nats_per_image"])

    said = _run([sigmavae_cli, "sample", checkpoint, "--n", "4", "--out", "samples.png"], cwd=user)
    assert "wrote 4 samples" in said
    assert (user / "samples.png").stat().st_size > 0
