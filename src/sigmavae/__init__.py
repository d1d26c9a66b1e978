"""sigmavae: variational autoencoders with calibrated decoders.

data -> model -> objective -> trainer -> metrics -> reports:

* :mod:`sigmavae.data`: data sets of 8-bit images (``uint8`` tensors), by name;
* :mod:`sigmavae.models`: networks that return what they computed (the model protocol);
* :mod:`sigmavae.likelihoods`: decoder heads ``p(x|z)`` ("calibrated decoders"), by name;
* :mod:`sigmavae.objective`: ELBO terms, importance weights, samples from a model and its head;
* :mod:`sigmavae.training`: the trainer;
* :mod:`sigmavae.metrics`: evaluation metrics and reports.
"""

from __future__ import annotations

from typing import Any

#: The package version: the one place it is written (pyproject.toml reads it from here at build
#: time; ``sigmavae --version`` and the installed metadata show it). Releases: CHANGELOG.md.
__version__ = "0.1.0"

#: Public names imported on first access (PEP 562), module -> names: ``import sigmavae`` (and
#: the CLI's start) stays light, and modules below may read ``__version__`` without a circle.
_LAZY = {"sigmavae.hub": ("from_pretrained", "push_to_hub")}


def __getattr__(name: str) -> Any:
    import importlib

    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'sigmavae' has no attribute {name!r}")
