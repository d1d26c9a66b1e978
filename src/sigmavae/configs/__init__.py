"""Ready-made training configs shipped inside the package, usable by name.

Each ``NAME.yaml`` beside this module is a :class:`~sigmavae.training.TrainConfig` mapping whose
first line is a comment saying in one line what it trains. From the command line::

    sigmavae configs                          # every name with its one line
    sigmavae configs demo-frey > mine.yaml    # print one, to copy and edit
    sigmavae train --config demo-frey         # train it (flags override its keys)
    sigmavae train --config mine.yaml         # a file path works as always

and from Python: ``sigmavae.configs.load("demo-frey")`` is the :class:`TrainConfig`.
"""

from __future__ import annotations

from pathlib import Path

from ..run.config import ConfigError, TrainConfig

__all__ = ["load", "names", "path", "resolve", "summary"]

#: The packaged YAML files (installed as package data beside this module; wheels install as
#: plain files, so a path is what :meth:`TrainConfig.from_yaml` and users' editors get).
FOLDER = Path(__file__).parent
SUFFIX = ".yaml"


def names() -> list[str]:
    """The packaged configs' names, sorted: ``["celeba-small", ..., "svhn-paper"]``."""
    return sorted(p.stem for p in FOLDER.glob(f"*{SUFFIX}"))


def path(name: str) -> Path:
    """The file of the packaged config ``name``.

    Raises:
        ConfigError: no packaged config has that name (the message lists the names).
    """
    if name not in names():
        raise ConfigError(f"no packaged config named {name!r}; packaged configs: "
                          f"{', '.join(names())}")
    return FOLDER / f"{name}{SUFFIX}"


def summary(name: str) -> str:
    """What the packaged config ``name`` trains, in one line (its first comment line)."""
    first = path(name).read_text().splitlines()[0]
    return first.removeprefix("#").strip()


def resolve(spec: str | Path) -> Path:
    """The YAML file ``--config spec`` means: an existing file, else a packaged config's name.

    A path that does not exist is an error, with the packaged config of the same name
    suggested where there is one (``configs/demo-frey.yaml`` of a clone became ``demo-frey``).

    Raises:
        ConfigError: neither an existing file nor a packaged name (one line listing the names).
    """
    given = Path(spec)
    if given.is_file():
        return given
    text = str(spec)
    if given.suffix not in (".yaml", ".yml") and given.name == text:  # a bare name
        if text not in names():
            raise ConfigError(f"config {text!r} is neither a file nor a packaged config; "
                              f"packaged configs: {', '.join(names())}")
        return path(text)
    hint = (f"; the packaged config {given.stem!r} is --config {given.stem}"
            if given.stem in names() else f"; packaged configs: {', '.join(names())}")
    raise ConfigError(f"config file {spec} does not exist{hint}")


def load(spec: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of a packaged config's name or of a YAML file (see
    :func:`resolve`): ``load("demo-frey").epochs`` -> 30."""
    return TrainConfig.from_yaml(resolve(spec))
