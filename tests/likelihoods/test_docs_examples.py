"""Every Python example of docs/likelihoods.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "likelihoods.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_page_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"{DOC}:block{index}", "exec"), namespace)
    if "nll" in namespace and "lengths" in namespace:  # the masked-sequence example
        assert float(namespace["nll"][3]) == 0.0
