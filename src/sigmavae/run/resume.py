"""Continuing a run from its folder: its saved config, what a resume may change, and whether
there is anything left to do.

A run folder holds its config twice: in ``checkpoints/last.ckpt`` (the ``config`` entry, the
config the run's state was trained with, updated at every checkpoint) and in ``config.json``
(written when it starts, rewritten when a resume changes it);
:meth:`~sigmavae.run.saved.SavedRun.find` reads the checkpoint's, or ``config.json`` where there is
no checkpoint yet.

A resumed run keeps what made it the run it is: the data, model, likelihood, objective,
optimisation, seed and processes. Only :data:`CHANGEABLE_ON_RESUME` may differ from the saved
config (how long it trains, how often it logs and checkpoints, where and how fast it runs); a
value given for any other key must equal the saved one, else :class:`ResumeConfigError` names
each key with the run's value and the one given.
"""

from __future__ import annotations

from typing import Any

from .config import ConfigError, TrainConfig, settings

#: Config keys a resumed run may change: none alters what is being trained or the numbers it
#: computes (up to float rounding: device, layout, compilation, fused kernels). ``epochs``
#: extends (or ends) the run; ``out`` is where the run folder now is; ``data_root`` where the
#: same data set's files now are. Every other key, and any key added later, is fixed.
CHANGEABLE_ON_RESUME = frozenset({
    "epochs", "out", "data_root", "val_batch_size", "accelerator", "speed_hint",
    "data_on_device", "channels_last", "compile", "compile_mode", "tune_malloc", "fused_adam",
    "log_every_n_steps", "checkpoint_every_n_steps", "keep_epoch_checkpoints", "num_samples",
    "progress", "max_nonfinite_steps"})


class ResumeConfigError(ConfigError):
    """A resume asked to change a key the run's saved config fixes (the message names them)."""


def fixed_changes(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """``"key given (the run's: saved)"`` for each key outside :data:`CHANGEABLE_ON_RESUME` where
    ``config`` differs from the ``saved`` config mapping (keys it lacks take their defaults,
    as in a checkpoint of an older version)."""
    old = {s.name: s.default_value() for s in settings()} | saved
    new = config.to_dict()
    return [f"{key} {shown(new[key])} (the run's: {shown(old[key])})" for key in new
            if key not in CHANGEABLE_ON_RESUME and old.get(key) != new[key]]


def refusal(changes: list[str]) -> str:
    """The reason refusing ``changes`` (from :func:`fixed_changes`), for "cannot resume X: "."""
    allowed = ", ".join(sorted(CHANGEABLE_ON_RESUME - {"out"}))
    return (f"{', '.join(changes)}: fixed for a run; leave them out to continue with the run's "
            f"values, or train a new run (--new-version); a resume may change only {allowed}")


def shown(value: Any) -> str:
    """A config value as a flag or YAML file takes it (``null`` for None)."""
    return "null" if value is None else repr(value)


__all__ = ["CHANGEABLE_ON_RESUME", "ResumeConfigError", "fixed_changes", "refusal", "shown"]
