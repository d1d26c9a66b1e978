"""The worked examples of docs/contributing.md run as written.

Every ``<!-- example: PATH -->`` block of the page is executed: a block for ``src/.../NAME.py`` is
loaded as the module it would be there (``sigmavae....NAME``, so its decorator registers it and
the example tests can import it), a block for ``tests/...`` is run as that test, and the
``together`` block trains the toy head, data set and model by name with ``Trainer`` and
evaluates the checkpoint with the toy metric through ``evaluate_checkpoint``. Whatever the
examples register is unregistered afterwards, so the rest of the suite sees the built-in names
only.
"""

from __future__ import annotations

import inspect
import math
import re
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sigmavae import cli, likelihoods
from sigmavae.data import DATASETS
from sigmavae.likelihoods.registry import HEADS
from sigmavae.metrics import METRICS
from sigmavae.models import MODELS

DOC = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"
BLOCK = re.compile(r"<!-- example: (\S+) -->\s*```python\n(.*?)```", re.S)
#: The example modules, in the order they must load (the metric's test builds a built-in model),
#: and what each registers.
MODULES = {
    "src/sigmavae/likelihoods/laplace.py": (HEADS, "laplace"),
    "src/sigmavae/data/bars.py": (DATASETS, "bars"),
    "src/sigmavae/models/mlp.py": (MODELS, "mlp"),
    "src/sigmavae/metrics/recon_mse.py": (METRICS, "recon_mse"),
}
TESTS = ["tests/likelihoods/test_laplace.py", "tests/data/test_data_bars.py",
         "tests/models/test_mlp.py", "tests/metrics/test_eval_recon_mse.py"]


def _blocks() -> dict[str, str]:
    found: dict[str, str] = {}
    for path, code in BLOCK.findall(DOC.read_text()):
        assert path not in found, f"two example blocks for {path}"
        found[path] = code
    return found


def _module_name(path: str) -> str:
    """``src/sigmavae/models/mlp.py`` -> ``sigmavae.models.mlp``."""
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


@contextmanager
def registered_examples() -> Iterator[dict[str, types.ModuleType]]:
    """Load the example modules as the package modules they would be; unload and unregister
    them afterwards (also when a test fails)."""
    blocks, loaded = _blocks(), {}
    try:
        for path in MODULES:
            name = _module_name(path)
            module = types.ModuleType(name)
            module.__file__ = str(DOC)
            sys.modules[name] = module
            loaded[path] = module
            exec(compile(blocks[path], f"{DOC}:{path}", "exec"), module.__dict__)
        yield loaded
    finally:
        for path, (registry, entry) in MODULES.items():
            registry.unregister(entry)
            sys.modules.pop(_module_name(path), None)


@pytest.fixture
def examples() -> Iterator[dict[str, types.ModuleType]]:
    with registered_examples() as modules:
        yield modules


def test_the_page_has_every_example_and_each_registers_itself_by_decorator() -> None:
    blocks = _blocks()
    assert set(blocks) == {*MODULES, *TESTS, "together"}
    for path, (_, entry) in MODULES.items():
        assert re.search(rf"^@register\w*\(\s*\"{entry}\"", blocks[path], re.M), path


@pytest.mark.parametrize("path", TESTS)
def test_the_example_tests_pass(examples, path, tmp_path) -> None:
    namespace: dict = {"__name__": _module_name(path)}
    exec(compile(_blocks()[path], f"{DOC}:{path}", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert tests, f"{path} defines no test"
    for test in tests:
        wants = inspect.signature(test).parameters
        test(**({"tmp_path": tmp_path} if "tmp_path" in wants else {}))


def test_toy_head_data_model_and_metric_train_and_evaluate_by_name(examples, tmp_path,
                                                                   monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the example writes runs/bars/
    namespace: dict = {"__name__": "together"}
    exec(compile(_blocks()["together"], f"{DOC}:together", "exec"), namespace)
    final, result = namespace["final"], namespace["result"]
    out = tmp_path / "runs" / "bars"
    # trained by name: 162 training images of bars, batch 32, 2 epochs
    assert final["step"] == 2 * math.ceil(162 / 32)
    assert math.isfinite(final["val_neg_elbo"]) and final["val_report"]["data_dims"] == 64
    for sub in ("checkpoints/last.ckpt", "epochs.csv", "samples/epoch_0002.png", "curves.png"):
        assert (out / sub).is_file(), sub
    rows = (out / "epochs.csv").read_text().splitlines()
    assert len(rows) == 3  # header and two epochs
    # evaluated from the checkpoint: the registries rebuild head and model, load the data set
    metrics = result.report["metrics"]
    assert result.report["likelihood_head"] == "laplace" and result.report["data"] == "bars"
    assert all(metrics[name]["available"] for name in metrics), metrics
    assert set(metrics) == {"elbo", "iwae", "discretized", "calibration", "recon_mse"}
    elbo = metrics["elbo"]["single_sample"]["neg_elbo_nats_per_image"]
    assert metrics["iwae"]["by_k"]["1"]["neg_bound_nats_per_image"] == pytest.approx(
        elbo, abs=5 * metrics["elbo"]["single_sample"]["neg_elbo_stderr_nats_per_image"] + 1)
    # the discretised bound of the 8-bit data is a mass: positive, from Laplace.cdf
    assert metrics["discretized"]["neg_elbo_nats_per_image"] > 0
    assert 0 < metrics["recon_mse"]["mse_per_dim"] < 1
    assert "reconstruction MSE" in capsys.readouterr().out
    assert (out / "eval.json").is_file() and (out / "eval.md").is_file()
    # the CLI knows the names from the registries
    assert cli.main(["likelihoods"]) == 0
    assert "laplace" in capsys.readouterr().out
    assert cli.main(["eval", str(out / "checkpoints" / "last.ckpt"), "--metrics", "recon_mse",
                     "--device", "cpu", "--limit", "8"]) == 0
    assert "| reconstruction MSE |" in capsys.readouterr().out
    assert cli.main(["train", "--data", "bars", "--model", "mlp", "--likelihood", "laplace",
                     "--likelihood-option", "init_scale=-1", "--out", str(tmp_path / "bad")]) == 2
    assert "init_scale must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_the_examples_are_unregistered_afterwards() -> None:
    with registered_examples():
        assert "laplace" in likelihoods.names() and "bars" in DATASETS and "mlp" in MODELS
    assert "laplace" not in likelihoods.names() and "bars" not in DATASETS
    assert "mlp" not in MODELS and "recon_mse" not in METRICS
    assert not any(_module_name(path) in sys.modules for path in MODULES)
