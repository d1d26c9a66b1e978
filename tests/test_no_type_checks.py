"""Metrics, training and the CLI work through the model protocol and what heads answer for
themselves: no ``isinstance`` on a model, head or distribution class anywhere in them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch.distributions

import sigmavae
from sigmavae import likelihoods, models

SRC = Path(sigmavae.__file__).parent
CHECKED = [*sorted((SRC / "metrics").glob("*.py")), *sorted((SRC / "training").glob("*.py")),
           *sorted((SRC / "run").glob("*.py")),
           SRC / "cli.py"]


def _class_names() -> set[str]:
    names = {name for module in (likelihoods, models)
             for name, obj in vars(module).items() if inspect.isclass(obj)}
    names |= {name for name, obj in vars(torch.distributions).items()
              if inspect.isclass(obj) and issubclass(obj, torch.distributions.Distribution)}
    return names


def test_no_isinstance_on_model_head_or_distribution_classes() -> None:
    pattern = re.compile(r"isinstance\(([^()]|\([^()]*\))*\)")
    classes = _class_names()
    found = []
    for path in CHECKED:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in pattern.finditer(line):
                named = set(re.findall(r"\b[A-Za-z_]\w*\b", match.group(0))) & classes
                if named:
                    found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
