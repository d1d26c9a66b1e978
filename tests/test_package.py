"""The package as something people install and live with: one version, packaged configs by
name, the metadata a wheel needs, a README that reads correctly outside the repository.
(Building and installing the wheel itself: tests/test_wheel.py.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import sigmavae
from sigmavae import configs
from sigmavae.cli import main
from sigmavae.run import ConfigError
from sigmavae.training import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REPOSITORY = PYPROJECT["project"]["urls"]["Repository"]


# -- one version --------------------------------------------------------------------------------
def test_the_version_is_written_once():
    """pyproject.toml takes the version from ``sigmavae.__version__`` (no second copy)."""
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "sigmavae.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?", sigmavae.__version__)


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"sigmavae {sigmavae.__version__}\n"


def test_changelog_has_the_version_and_an_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    assert re.search(rf"^## \[{re.escape(sigmavae.__version__)}\] - \d{{4}}-\d\d-\d\d$", text,
                     re.M), f"CHANGELOG.md has no entry for {sigmavae.__version__}"


# -- packaged configs by name -------------------------------------------------------------------
def test_packaged_configs_are_valid_and_say_what_they_train():
    names = configs.names()
    assert "demo-frey" in names and "svhn-paper" in names
    for name in names:
        assert isinstance(configs.load(name), TrainConfig)
        line = configs.summary(name)
        assert 20 <= len(line) <= 100, f"{name}: first comment line {line!r}"
    assert configs.load("demo-frey") == TrainConfig.from_yaml(configs.FOLDER / "demo-frey.yaml")


def test_a_path_still_works_and_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("data: frey\nepochs: 2\n")
    assert configs.load("mine.yaml").epochs == 2
    (tmp_path / "demo-frey").write_text("data: frey\nepochs: 3\n")  # a file of that name
    assert configs.load("demo-frey").epochs == 3


def test_an_unknown_name_lists_the_names():
    with pytest.raises(ConfigError) as err:
        configs.resolve("nosuch")
    message = str(err.value)
    assert "\n" not in message and "'nosuch'" in message
    assert all(name in message for name in configs.names())


def test_a_missing_repository_path_points_to_the_packaged_name(tmp_path, monkeypatch):
    """``configs/demo-frey.yaml`` (the README of a clone, before the configs moved)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"configs/demo-frey.yaml does not exist; the packaged "
                                          r"config 'demo-frey' is --config demo-frey"):
        configs.resolve("configs/demo-frey.yaml")


def test_configs_command_lists_and_prints(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == configs.names()
    assert all(configs.summary(line.split()[0]) in line for line in lines)
    assert main(["configs", "svhn-paper"]) == 0  # the file as shipped, to copy and edit
    assert capsys.readouterr().out == configs.path("svhn-paper").read_text()


def test_unknown_config_is_one_line_exit_2(capsys):
    assert main(["train", "--config", "nosuch"]) == 2
    assert main(["configs", "nosuch"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("packaged configs: celeba-small" in line for line in err)


def test_every_config_the_docs_name_exists():
    """Every ``--config NAME`` in the README, the docs and the Makefile is a packaged name, and
    no path points into the repository's old ``configs/`` folder (the configs live in the
    package; a user's own file, e.g. ``runs/<id>/train.yaml``, is a path as before)."""
    texts = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    given = {m for path in texts for m in re.findall(r"--config[ =]([\w./<>-]+)", path.read_text())}
    names = {g for g in given if "/" not in g and not g.endswith((".yaml", ".yml"))}
    assert names, "no --config NAME found: the pattern is broken"
    assert names - {"FILE", "NAME", "PATH"} <= set(configs.names()), names
    assert not [g for g in given if g.startswith(("configs/", "./configs/"))]


# -- what the wheel carries ----------------------------------------------------------------------
def test_metadata_a_wheel_needs():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    # an SPDX license expression and a License :: classifier may not be combined (PEP 639)
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert "Typing :: Typed" in project["classifiers"]
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(project["urls"])
    assert project["keywords"]
    assert (ROOT / "src" / "sigmavae" / "py.typed").is_file()


def test_every_package_data_pattern_matches_files():
    """A pattern that matches nothing is a file that moved without its pattern (or the
    reverse): the wheel would silently lack it."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["sigmavae"]
    package = ROOT / "src" / "sigmavae"
    for pattern in patterns:
        assert list(package.glob(pattern)), f"package-data {pattern!r} matches nothing"
    data = {p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    covered = {f for f in data if any(Path(f).match(pattern) for pattern in patterns)}
    assert covered == data, f"files no package-data pattern ships: {sorted(data - covered)}"


# -- the README outside the repository -----------------------------------------------------------
def test_readme_links_work_outside_the_repository():
    """PyPI and other mirrors show the README without the repository's files: every link is
    absolute (or an anchor), and links into this repository point at its public address."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"""src=["']([^"']+)""", text)
    assert targets
    relative = [t for t in targets if not re.match(r"https?://|#|mailto:", t)]
    assert not relative, f"relative links in README.md: {relative}"
    for target in targets:
        for prefix in (REPOSITORY + "/blob/main/", REPOSITORY + "/raw/main/"):  # page, image
            if target.startswith(prefix):
                local = ROOT / target.removeprefix(prefix).split("#")[0]
                assert local.exists(), f"README links to {target}, not in the repository"
