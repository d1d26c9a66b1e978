"""What a run folder holds, and when a run may start in one: no run is overwritten by accident.

A folder *holds a run* when it has any of :data:`RUN_OUTPUTS` (what ``sigmavae train`` writes).
A run starting there must say what to do with it (:func:`start_check`):

* continue it: ``--resume auto`` / ``fit(resume="auto")`` (or the folder's own checkpoint);
* train a new version beside it: ``--new-version`` (:func:`next_version`: ``DIR-2``, ``DIR-3``...);
* replace it: ``--overwrite`` / ``Trainer(..., overwrite=True)``, which removes the outputs of the
  old run (:func:`clear_run`: its checkpoints, CSVs, TensorBoard events, grids) so that nothing of
  it, no overlapping TensorBoard steps either, is left; other files in the folder stay.

Anything else is refused with :class:`RunExistsError`, one line offering those three choices.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: What the trainer writes into its run folder (files and folders); any of them means "a run".
RUN_OUTPUTS = ("checkpoints", "config.json", "final.json", "epochs.csv", "steps.csv",
               "tensorboard", "samples", "reconstructions", "curves.png")
#: Outputs that mean the run got somewhere (a finished epoch): never cleared without asking.
_RESULTS = ("final.json", "epochs.csv")


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (it holds another run, or another process is
    training in it)."""


class RunExistsError(RunFolderError):
    """The folder holds a run and the new one did not say what to do with it (resume it,
    ``--new-version``, or ``--overwrite``)."""


def run_outputs(folder: str | Path) -> list[str]:
    """The :data:`RUN_OUTPUTS` present in ``folder`` (folders only if not empty), in that
    order; empty if there are none or the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for name in RUN_OUTPUTS:
        path = folder / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(name)
    return found


def next_version(folder: str | Path) -> Path:
    """The first of ``DIR-2``, ``DIR-3``, ... that does not exist (a sibling of ``DIR``, so
    each version is a run folder of its own)."""
    folder = Path(folder)
    n = 2
    while (candidate := folder.with_name(f"{folder.name}-{n}")).exists():
        n += 1
    return candidate


def start_check(folder: str | Path, resume: str | Path | None, overwrite: bool) -> list[str]:
    """The outputs of an old run to remove before a run starts in ``folder`` (empty: none).

    Args:
        folder: the run folder (``config.out``).
        resume: ``None`` (a new run), ``"auto"`` (``folder``'s ``checkpoints/last.ckpt`` if it
            exists, else a new run) or a checkpoint path.
        overwrite: the user asked to replace whatever run the folder holds.

    Returns:
        ``[]`` when the folder holds no run, or the run is being continued from its own
        checkpoint; else, with ``overwrite``, the old run's outputs; and with ``resume="auto"``
        the outputs of a run that never saved a checkpoint nor finished an epoch (it can only
        start again).

    Raises:
        RunExistsError: the folder holds a run and the call would replace it (or mix another
            checkpoint's run into it) without ``overwrite``.
    """
    folder = Path(folder)
    found = run_outputs(folder)
    if not found:
        return []
    checkpoint = folder / "checkpoints" / "last.ckpt"
    if resume == "auto" and checkpoint.is_file():
        return []  # continuing the run
    if resume not in (None, "auto") and _inside(Path(resume), folder):
        return []  # continuing the run from one of its own checkpoints
    if overwrite:
        return found
    shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
    if resume == "auto":
        if not any(name in found for name in _RESULTS):
            return found  # killed before its first checkpoint: nothing to continue or keep
        raise RunExistsError(
            f"{folder} holds a run ({shown}) but no checkpoint to resume it from ({checkpoint} "
            f"is missing); train a new version with --new-version (into {next_version(folder)})"
            ", or start it again with --overwrite")
    if resume is not None:
        raise RunExistsError(
            f"{folder} already holds a run ({shown}); resuming {resume} into it would mix two "
            "runs: resume into another --out, or replace the run with --overwrite")
    raise RunExistsError(
        f"{folder} already holds a run ({shown}); continue it with --resume auto, train a new "
        f"version with --new-version (into {next_version(folder)}), or replace it with "
        "--overwrite")


def clear_run(folder: str | Path, outputs: list[str] | None = None) -> list[str]:
    """Remove ``outputs`` (default: every one of :data:`RUN_OUTPUTS` present) from ``folder``;
    returns what was removed. Other files (the lock, an ``eval.json``, the user's) stay."""
    folder = Path(folder)
    removed = []
    for name in run_outputs(folder) if outputs is None else outputs:
        if name not in RUN_OUTPUTS:  # only ever the trainer's own outputs
            raise ValueError(f"clear_run: {name!r} is not a run output ({RUN_OUTPUTS})")
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (both resolved: links and ``..`` followed)."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
