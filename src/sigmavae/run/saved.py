"""A run folder as a resume finds it: its checkpoint, its saved config and how far it got.

What a resume may change is decided in :mod:`sigmavae.run.resume`; this module reads the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, TrainConfig
from .load import stored_config
from .resume import ResumeConfigError, fixed_changes, refusal, shown
from .state import TrainState


@dataclass(frozen=True)
class SavedRun:
    """A run folder as a resume finds it.

    Attributes:
        folder: the run folder.
        checkpoint: the checkpoint to continue from, or ``None`` (none saved yet).
        config: the saved config (the checkpoint's, else ``config.json``'s), or ``None``: the
            folder holds no run to continue.
        epochs_done, step: how far the checkpoint got (0 without one).
    """

    folder: Path
    checkpoint: Path | None
    config: TrainConfig | None
    epochs_done: int = 0
    step: int = 0

    @classmethod
    def find(cls, resume: str | Path, out: str | Path | None = None,
             default_out: str | Path = TrainConfig.out) -> SavedRun:
        """The run that ``resume`` (``"auto"`` or a checkpoint path) continues.

        The folder is ``out`` if given; else, for ``"auto"``, ``default_out``; for a
        checkpoint ``DIR/checkpoints/NAME.ckpt``, ``DIR``; for one elsewhere, the folder its
        config names.

        Raises:
            CheckpointError: the checkpoint is missing or unreadable (one line naming it).
            ConfigError: its config (or ``config.json``) is not a valid config.
        """
        if resume == "auto":
            folder = Path(out if out is not None else default_out)
            last = folder / "checkpoints" / "last.ckpt"
            if not last.is_file():
                return cls(folder, None, _config_json(folder))
            checkpoint = last
        else:
            checkpoint = Path(resume)
        state = TrainState.load(checkpoint)
        config = stored_config(state.config, checkpoint)
        if out is not None:
            folder = Path(out)
        elif checkpoint.parent.name == "checkpoints":
            folder = checkpoint.parent.parent
        else:
            folder = Path(config.out)
        loop = state.loop or {}
        return cls(folder, checkpoint, config, int(loop.get("epoch", 0)),
                   int(loop.get("step", 0)))

    def continued(self, given: dict[str, Any]) -> tuple[TrainConfig, str]:
        """The config to continue with: the saved one with the ``given`` values (keys given
        on the command line or in a config file; mappings complete) and ``out`` the folder;
        and the one line saying so and what changed.

        Raises:
            ResumeConfigError: a given value differs from the saved one for a key outside
                :data:`CHANGEABLE_ON_RESUME`.
            ConfigError: a given value is invalid.
        """
        if self.config is None:
            raise ValueError("continued: there is no saved run to continue")
        saved = self.config.to_dict()
        config = self.config.replace(**{**given, "out": str(self.folder)})
        refused = fixed_changes(saved, config)
        if refused:
            raise ResumeConfigError(f"cannot resume {self.folder} with {refusal(refused)}")
        new = config.to_dict()
        changed = [f"{k} {shown(saved[k])} -> {shown(new[k])}" for k in new
                   if k != "out" and saved[k] != new[k]]
        source = self.checkpoint if self.checkpoint is not None else self.folder / "config.json"
        line = f"resuming {self.folder} with its saved config ({source})"
        return config, line + (f"; changed: {', '.join(changed)}" if changed else "")

    def finished(self, epochs: int) -> str | None:
        """The line saying the run has nothing left to do at ``epochs`` epochs (its checkpoint
        has them all and its ``final.json`` is written), or ``None``."""
        if self.checkpoint is None or self.epochs_done < epochs:
            return None
        if not (self.folder / "final.json").is_file():
            return None  # killed after its last checkpoint: the trainer writes what is missing
        if self.epochs_done > epochs:
            return (f"run {self.folder} is finished: {self.epochs_done} epochs done, more than "
                    f"--epochs {epochs}; nothing to do — raise --epochs above "
                    f"{self.epochs_done} to continue")
        return (f"run {self.folder} is finished: {self.epochs_done} of {epochs} epochs; nothing "
                f"to do — raise --epochs to continue")


def _config_json(folder: Path) -> TrainConfig | None:
    """``folder/config.json`` as a config, or ``None`` if there is none."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: cannot be read as the run's config ({err})") from None
    return TrainConfig.from_dict(values, source=str(path))


__all__ = ["SavedRun"]
