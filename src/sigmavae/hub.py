"""Sharing trained models: :func:`from_pretrained` and :func:`push_to_hub`, after the Hugging
Face Hub's ``PyTorchModelHubMixin`` (its file layout and its method names).

An exported model (``sigmavae export RUN --out FOLDER``, :mod:`sigmavae.run.export`) is a
folder of ``model.safetensors``, ``config.json`` and ``README.md``. :func:`from_pretrained` takes
such a folder, read with plain ``json`` and ``safetensors`` (``huggingface_hub`` is not needed),
or a Hub repo id such as ``"user/frey-sigma-vae"``, whose files are downloaded (and cached) by
``huggingface_hub``, the optional ``hub`` extra (``pip install "sigmavae[hub]"``).
:func:`push_to_hub` uploads an export folder to a Hub model repo.

>>> model = from_pretrained("runs/frey/export")               # a local folder
>>> model = from_pretrained("user/frey-sigma-vae")            # a Hub repo (the hub extra)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .messages import first_line
from .run.export import EXPORT_FILES, ExportError, load_pretrained, read_export_config

__all__ = ["download", "from_pretrained", "push_to_hub"]

_EXTRA = 'pip install "sigmavae[hub]"'


def from_pretrained(name_or_path: str | Path, *, map_location: str | torch.device = "cpu",
                    revision: str | None = None, cache_dir: str | Path | None = None,
                    token: str | bool | None = None, local_files_only: bool = False,
                    model: nn.Module | None = None) -> nn.Module:
    """A trained model, ready in eval mode, from an export folder or a Hub repo id.

    Args:
        name_or_path: a local export folder, or a Hugging Face Hub model repo id
            (``"user/name"``, needs the ``hub`` extra).
        map_location: the device to load the weights to.
        revision: a Hub repo's branch, tag or commit (as in
            ``huggingface_hub.snapshot_download``, like the next three).
        cache_dir: the Hub cache folder (default: huggingface_hub's).
        token: the Hub access token (default: huggingface_hub's login).
        local_files_only: no network: the Hub cache only.
        model: a ready module of your own to load the weights into (default: rebuilt from
            ``config.json`` through the model and likelihood registries).

    Returns:
        The model (``model.training`` is ``False``). Its config:
        ``sigmavae.run.load_pretrained(download(name_or_path))`` returns both.

    Raises:
        ExportError: not an export folder and not a reachable Hub repo, a missing file, or
            weights that do not fit the config (one line).
        ConfigError: the stored config is invalid.
    """
    folder = download(name_or_path, revision=revision, cache_dir=cache_dir, token=token,
                      local_files_only=local_files_only)
    return load_pretrained(folder, map_location=map_location, model=model)[0]


def download(name_or_path: str | Path, *, revision: str | None = None,
             cache_dir: str | Path | None = None, token: str | bool | None = None,
             local_files_only: bool = False) -> Path:
    """The local folder of an exported model: ``name_or_path`` itself when it is a folder,
    else the Hub repo's export files downloaded into the Hub cache (only those files).

    Raises:
        ExportError: ``name_or_path`` is a file; or not a folder and ``huggingface_hub`` is
            not installed, or the Hub has no such repo or cannot be reached.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.is_file():
        raise ExportError(f"{path} is a file; expected an exported model folder (sigmavae "
                          "export) or a Hub repo id")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ExportError(f"{name_or_path} is not a folder here; to read it as a Hugging "
                          f"Face Hub repo id, install the hub extra: {_EXTRA}") from None
    try:
        folder = snapshot_download(
            repo_id=str(name_or_path), revision=revision, cache_dir=cache_dir, token=token,
            local_files_only=local_files_only, allow_patterns=list(EXPORT_FILES))
    except Exception as err:  # huggingface_hub's errors: no repo, offline, bad id, HTTP
        raise ExportError(f"{name_or_path} is neither a folder here nor a model on the Hugging "
                          f"Face Hub that could be fetched: {first_line(err)}") from None
    return Path(folder)


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool | None = None,
                token: str | None = None, revision: str | None = None,
                commit_message: str = "Upload sigmavae model") -> str:
    """Upload export ``folder`` (its :data:`~sigmavae.run.export.EXPORT_FILES` only) to the
    Hub model repo ``repo_id``, creating the repo if needed; returns the commit's URL.

    The folder is checked first (``config.json`` readable, of this format, with a valid
    config), so that a broken export is not published. Needs the ``hub`` extra and a token
    (``token=``, ``HF_TOKEN`` or ``hf auth login``).

    Raises:
        ExportError: not a complete export folder, or ``huggingface_hub`` is not installed.
    """
    read_export_config(folder)
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ExportError(f"push_to_hub needs huggingface_hub: {_EXTRA}") from None
    api = HfApi(token=token)
    repo = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    commit: Any = api.upload_folder(
        repo_id=getattr(repo, "repo_id", repo_id), folder_path=str(folder), repo_type="model",
        revision=revision, commit_message=commit_message, allow_patterns=list(EXPORT_FILES))
    return str(getattr(commit, "commit_url", commit))
