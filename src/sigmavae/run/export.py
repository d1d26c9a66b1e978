"""A trained model as a folder to share: weights only, no pickle, loadable anywhere.

The folder has the layout of the Hugging Face Hub's ``PyTorchModelHubMixin`` (so that it can be
pushed to the Hub as it is and read back by :func:`sigmavae.from_pretrained`):

* ``model.safetensors``: the model's ``state_dict()``, every parameter and buffer, the head's
  running sigma included; no optimiser state (a few MB where the checkpoint, with Adam's two
  moments, is about three times that). Safetensors holds raw tensors only: reading it runs no
  code.
* ``config.json``: the :class:`~sigmavae.run.config.TrainConfig` that rebuilds the model and
  its head (``train_config``), the shape of one example (``data_shape``), how the data are
  scaled for the head (``data_scaling``), the sigmavae version that wrote it, and the epoch
  and step the weights are from. ``data_root`` and ``out`` (places on the trainer's machine)
  are left out.
* ``README.md``: a short model card (with the Hub's YAML metadata header).

:func:`export_checkpoint` writes it from a checkpoint (``sigmavae export``),
:func:`save_pretrained` from a model in memory, and :func:`load_pretrained` reads it back: a
ready model in eval mode. Only ``json`` and ``safetensors`` are read, never a pickle; a missing
file, an unknown format or weights that do not fit the config give one :class:`ExportError`
line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..dataset_elbo import data_scaling
from ..messages import first_line
from .build import build_vae
from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig
from .load import load_trained
from .state import TrainState

#: The layout this version writes and reads (``format`` in ``config.json`` and in the
#: safetensors header's metadata).
EXPORT_FORMAT = "sigmavae-export-v1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
#: The files of an exported model (what is pushed to the Hub).
EXPORT_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
#: TrainConfig keys naming places on the machine that trained the model: not exported.
MACHINE_KEYS = ("data_root", "out")


class ExportError(CheckpointError):
    """An exported model folder is missing, incomplete or inconsistent, or could not be
    written (one line naming the file)."""


@dataclass(frozen=True)
class Exported:
    """What :func:`export_checkpoint` / :func:`save_pretrained` wrote.

    Attributes:
        folder: the export folder.
        sizes: file name -> size in bytes, for each of :data:`EXPORT_FILES`.
        source: the checkpoint exported (``None`` for a model in memory).
        source_bytes: the checkpoint's size in bytes (``None`` for a model in memory).
    """

    folder: Path
    sizes: dict[str, int]
    source: Path | None = None
    source_bytes: int | None = None

    def summary(self) -> str:
        """One line: what was written where, with the sizes."""
        files = ", ".join(f"{name} {human_bytes(n)}" for name, n in self.sizes.items())
        if self.source is None:
            return f"exported the model to {self.folder}: {files}"
        return (f"exported {self.source} ({human_bytes(self.source_bytes or 0)}, with the "
                f"optimiser's state) to {self.folder}: {files}")


def human_bytes(n: int) -> str:
    """``n`` bytes as ``"3.5 MB"`` / ``"12 KB"`` / ``"512 B"`` (powers of 1000)."""
    if n >= 1000**2:
        return f"{n / 1000**2:.1f} MB"
    return f"{n / 1000:.0f} KB" if n >= 1000 else f"{n} B"


# -- writing ---------------------------------------------------------------------------------------
def checkpoint_of(source: str | Path) -> Path:
    """The checkpoint file ``source`` names: itself, or a run folder's
    ``checkpoints/last.ckpt``.

    Raises:
        ExportError: ``source`` does not exist, or is a folder without that checkpoint.
    """
    source = Path(source)
    if source.is_dir():
        checkpoint = source / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            hint = (" (it is already an exported model)" if (source / CONFIG_FILE).is_file()
                    and (source / WEIGHTS_FILE).is_file() else "")
            raise ExportError(f"{source}: no checkpoints/last.ckpt in this folder{hint}; give "
                              "a run folder or a checkpoint file")
        return checkpoint
    if not source.exists():
        raise ExportError(f"{source} does not exist; give a run folder or a checkpoint file")
    return source


def export_checkpoint(source: str | Path, out: str | Path, *, overwrite: bool = False,
                      model: nn.Module | Callable[[tuple[int, ...]], nn.Module] | None = None,
                      ) -> Exported:
    """Export the model of checkpoint ``source`` (or of run folder ``source``, its
    ``checkpoints/last.ckpt``) to the folder ``out``; see the module docstring for what is
    written. The model is rebuilt and its weights checked (:func:`load_trained`) first.

    Args:
        source: a run folder or a checkpoint file.
        out: the export folder: new, empty, or (with ``overwrite``) replaced file by file.
        overwrite: replace the export files of a folder that is not empty.
        model: for a model of your own, which the registries cannot rebuild: as in
            :func:`load_trained` (a ready module, or a function of the data shape making one).

    Raises:
        ExportError: no such run or checkpoint, or ``out`` is not empty (without
            ``overwrite``) or cannot be written.
        CheckpointError, ConfigError: the checkpoint cannot be read or rebuilt.
    """
    checkpoint = checkpoint_of(source)
    state = TrainState.load(checkpoint)
    trained_model, config = load_trained(checkpoint, model=model)
    loop = state.loop or {}
    trained = {"epoch": loop.get("epoch"), "step": loop.get("step")}
    results = _run_results(checkpoint, trained["step"])
    written = save_pretrained(trained_model, config, out, overwrite=overwrite, trained=trained,
                              results=results, data_shape=tuple(state.data_shape))
    return Exported(written.folder, written.sizes, checkpoint, checkpoint.stat().st_size)


def save_pretrained(model: nn.Module, config: TrainConfig, out: str | Path, *,
                    overwrite: bool = False, data_shape: tuple[int, ...] | None = None,
                    trained: dict[str, Any] | None = None,
                    results: dict[str, Any] | None = None) -> Exported:
    """Write ``model`` (built from ``config``) as an export folder ``out``.

    The three files are written into a temporary folder beside ``out`` first and moved into
    place at the end, so that a failed write leaves no half-written export.

    Args:
        model: the trained model (its ``state_dict()`` is saved; any device and dtype).
        config: the config that built it (``build_vae(config, data_shape)`` must rebuild it).
        out: the export folder.
        overwrite: replace the export files of a folder that is not empty.
        data_shape: the shape of one example (default: ``model.data_shape``).
        trained: ``{"epoch": ..., "step": ...}`` the weights are from, if known.
        results: validation numbers for the model card (``final.json``'s keys), if known.

    Raises:
        ExportError: ``out`` is not empty (without ``overwrite``), or cannot be written.
    """
    out = Path(out)
    shape = tuple(int(s) for s in (data_shape if data_shape is not None
                                   else getattr(model, "data_shape", ())))
    if not shape:
        raise ExportError("save_pretrained: data_shape is needed (the model has no data_shape)")
    _check_target(out, overwrite)
    head = getattr(model, "head", None)
    description = {
        "format": EXPORT_FORMAT,
        "sigmavae_version": __version__,
        "data_shape": list(shape),
        "latent_dim": getattr(model, "latent_dim", None),
        "data_scaling": data_scaling(getattr(head, "data_kind", "unit"),
                                     getattr(head, "data_range", "unit")),
        "input": "uint8 examples (B, *data_shape), 0..255; or floats in [0, 1] (x / 255)",
        "trained": trained or {},
        "train_config": {k: v for k, v in config.to_dict().items() if k not in MACHINE_KEYS},
    }
    # plain, contiguous CPU copies: safetensors refuses tensors that share memory
    weights = {name: t.detach().to("cpu", copy=True).contiguous()
               for name, t in model.state_dict().items()}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as err:
        raise ExportError(f"cannot write the export folder {out}: {_reason(err)}") from err
    try:
        save_file(weights, staging / WEIGHTS_FILE,
                  metadata={"format": "pt", "sigmavae": EXPORT_FORMAT})
        (staging / CONFIG_FILE).write_text(json.dumps(description, indent=2) + "\n")
        (staging / CARD_FILE).write_text(model_card(description, results))
        _share_permissions(staging)
        _move_into_place(staging, out)
    except OSError as err:
        raise ExportError(f"cannot write the export folder {out}: {_reason(err)}") from err
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    return Exported(out, {name: (out / name).stat().st_size for name in EXPORT_FILES})


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; the export needs a folder (--out)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty; give a new folder, or --overwrite "
                          f"(overwrite=True) to replace its {', '.join(EXPORT_FILES)}")


def _share_permissions(staging: Path) -> None:
    """The modes a plain write would give (``mkdtemp`` and safetensors make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    for name in EXPORT_FILES:
        (staging / name).chmod(0o666 & ~umask)


def _move_into_place(staging: Path, out: Path) -> None:
    """The staged files into ``out``: the whole folder renamed when ``out`` is new or empty,
    else each file replaced (``os.replace``: atomic per file), other files left alone."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(staging, out)
        return
    for name in EXPORT_FILES:
        os.replace(staging / name, out / name)


def _run_results(checkpoint: Path, step: Any) -> dict[str, Any] | None:
    """The run's ``final.json`` beside ``checkpoints/``, if it is for the checkpoint's step."""
    final = checkpoint.parent.parent / "final.json"
    try:
        values = json.loads(final.read_text())
    except (OSError, ValueError):
        return None
    return values if isinstance(values, dict) and values.get("step") == step else None


def model_card(description: dict[str, Any], results: dict[str, Any] | None = None) -> str:
    """The ``README.md`` of an export: Hub metadata, what the model is, how to load it."""
    config = description["train_config"]
    trained = description.get("trained") or {}
    tags = ["sigmavae", "vae", "sigma-vae", str(config["likelihood"]), str(config["model"])]
    options = ", ".join(f"{k}={v}" for k, v in config["likelihood_options"].items())
    head = f"`{config['likelihood']}`" + (f" ({options})" if options else "")
    latent = description.get("latent_dim") or config.get("latent_dim") or "default"
    when = (f" for {trained['epoch']} epochs ({trained['step']} steps)"
            if trained.get("epoch") is not None else "")
    lines = [
        "---",
        "library_name: sigmavae",
        "tags:",
        *(f"- {tag}" for tag in dict.fromkeys(tags)),
        "---",
        "",
        f"# sigmavae: `{config['model']}` VAE with the {head} decoder, trained on "
        f"`{config['data']}`",
        "",
        f"A variational autoencoder with a calibrated decoder (sigma-VAE), trained{when} with "
        f"sigmavae {description['sigmavae_version']} (objective `{config['objective']}`, "
        f"latent size {latent}, seed {config['seed']}).",
        "",
        f"- Input: {description['input']}; one example has shape "
        f"`{tuple(description['data_shape'])}`.",
        f"- Likelihood: {description['data_scaling']}; `log_prob` in nats per example.",
    ]
    if results and isinstance(results.get("val_neg_elbo"), float | int):
        bpd, sigma = results.get("val_bits_per_dim"), results.get("sigma")
        lines.append(f"- Validation -ELBO when exported: {results['val_neg_elbo']:.2f} "
                     "nats/example"
                     + (f" ({bpd:.4f} bits/dim)" if isinstance(bpd, float | int) else "")
                     + (f", sigma {sigma:.4f}" if isinstance(sigma, float | int) else "") + ".")
    lines += [
        "",
        "```python",
        "import sigmavae",
        "",
        'model = sigmavae.from_pretrained("THIS_FOLDER_OR_HUB_REPO")  # eval mode',
        "q = model.posterior(images.float() / 255)  # q(z|x): q.mean, q.stddev (B, latent)",
        "```",
        "",
        f"Files: `{WEIGHTS_FILE}` (weights and buffers, the head's running sigma included; no "
        f"optimiser state), `{CONFIG_FILE}` (format `{EXPORT_FORMAT}`: the training config "
        "that rebuilds the model, the data shape and scaling).",
        "",
    ]
    return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------------------
def read_export_config(folder: str | Path) -> tuple[TrainConfig, tuple[int, ...], dict[str, Any]]:
    """The config, the data shape and the whole ``config.json`` of export ``folder``.

    Raises:
        ExportError: not a folder, a missing or unreadable ``config.json``, another format, or
            entries missing.
        ConfigError: ``train_config`` has unknown keys or bad values (naming the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        hint = (" (a checkpoint: load it with sigmavae.run.load_trained, or export it with "
                "sigmavae export)" if folder.is_file() else "")
        raise ExportError(f"{folder} is not a folder{hint}; expected an exported model "
                          f"folder with {CONFIG_FILE} and {WEIGHTS_FILE}")
    path = folder / CONFIG_FILE
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ExportError(f"{folder} has no {name}: not a complete exported model "
                              f"(sigmavae export writes {', '.join(EXPORT_FILES)})")
    try:
        description = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ExportError(f"cannot read {path}: {first_line(err)}") from None
    except ValueError as err:
        raise ExportError(f"{path} is not valid JSON: {first_line(err)}") from None
    if not isinstance(description, dict) or description.get("format") != EXPORT_FORMAT:
        found = (description.get("format") if isinstance(description, dict) else None)
        raise ExportError(f"{path}: format {found!r}, expected {EXPORT_FORMAT!r} (written by "
                          "sigmavae export of another version, or not by sigmavae?)")
    missing = [k for k in ("train_config", "data_shape") if k not in description]
    if missing:
        raise ExportError(f"{path} lacks {', '.join(missing)} (needed to rebuild the model)")
    shape = description["data_shape"]
    if not (isinstance(shape, list) and shape and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        raise ExportError(f"{path}: data_shape must be positive integers (the shape of one "
                          f"example), got {shape!r}")
    try:
        config = TrainConfig.from_dict(description["train_config"],
                                       source=f"{path} (train_config)")
    except ConfigError as err:
        message = str(err)
        if str(path) not in message:  # the value checks say "config: ..."
            message = f"{path} (train_config): {message.removeprefix('config: ')}"
        raise ConfigError(message) from None
    return config, tuple(shape), description


def load_pretrained(folder: str | Path, map_location: str | torch.device = "cpu",
                    model: nn.Module | None = None) -> tuple[nn.Module, TrainConfig]:
    """The model (in eval mode, on ``map_location``) and config of export ``folder``.

    Args:
        folder: a folder written by :func:`export_checkpoint` or :func:`save_pretrained`.
        map_location: the device the weights are loaded to.
        model: a ready module to load the weights into (a model of your own, which the
            registries cannot rebuild); default: rebuilt from ``config.json``.

    Raises:
        ExportError: a missing file, another format, an unreadable ``model.safetensors``, or
            weights that do not fit the model the config describes.
        ConfigError: the stored config is invalid.
    """
    folder = Path(folder)
    config, shape, _ = read_export_config(folder)
    path = folder / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = (f.metadata() or {}).get("sigmavae")
        weights = load_file(path, device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ExportError(f"{path} is not a readable safetensors file: "
                          f"{first_line(err)}") from None
    if stored != EXPORT_FORMAT:
        raise ExportError(f"{path}: its header names format {stored!r}, expected "
                          f"{EXPORT_FORMAT!r} (not written by sigmavae export?)")
    if model is None:
        try:
            model = build_vae(config, shape)
        except (ValueError, TypeError, KeyError, RuntimeError) as err:
            raise ExportError(f"{folder / CONFIG_FILE}: cannot rebuild the model: "
                              f"{first_line(err)}") from None
    if config.precision == "64-true":  # trained in float64: evaluate in float64 too
        model = model.double()
    model = model.to(map_location)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ExportError(_mismatch(path, config, model, weights, err)) from None
    model.eval()
    return model, config


def load_model(source: str | Path, map_location: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The model (eval mode) and config of any trained-model source: an export folder
    (:func:`load_pretrained`), a run folder (its ``checkpoints/last.ckpt``) or a checkpoint
    file (:func:`~sigmavae.run.load_trained`). What ``sigmavae eval`` and ``sigmavae sample``
    accept.

    Raises:
        ExportError / CheckpointError: ``source`` is none of these, or cannot be read (one line
            naming it).
    """
    folder = Path(source)
    if folder.is_dir() and (folder / WEIGHTS_FILE).is_file():
        return load_pretrained(folder, map_location=map_location)
    if folder.is_dir() and not (folder / "checkpoints" / "last.ckpt").is_file():
        raise ExportError(f"{folder} is a folder with neither {WEIGHTS_FILE} (an exported "
                          "model) nor checkpoints/last.ckpt (a run); give one of these or a "
                          "checkpoint file")
    if folder.is_dir():
        return load_trained(folder / "checkpoints" / "last.ckpt", map_location=map_location)
    return load_trained(source, map_location=map_location)  # its own "does not exist" line


def _mismatch(path: Path, config: TrainConfig, model: nn.Module,
              weights: dict[str, torch.Tensor], err: RuntimeError) -> str:
    """One line: the entries the file lacks, adds, or has in another shape."""
    expected = model.state_dict()
    groups = {
        "missing": [k for k in expected if k not in weights],
        "unexpected": [k for k in weights if k not in expected],
        "wrong shape": [f"{k} (file {list(weights[k].shape)}, model {list(v.shape)})"
                        for k, v in expected.items()
                        if k in weights and weights[k].shape != v.shape],
    }
    parts = [f"{label}: {', '.join(items[:3])}"
             + (f" and {len(items) - 3} more" if len(items) > 3 else "")
             for label, items in groups.items() if items]
    return (f"{path} does not fit the model its {CONFIG_FILE} describes (model "
            f"{config.model!r}, likelihood {config.likelihood!r}): "
            f"{'; '.join(parts) or first_line(err)}")


def _reason(err: OSError) -> str:
    return err.strerror.lower() if err.strerror else first_line(err)
