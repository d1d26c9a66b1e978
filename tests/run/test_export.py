"""Weights-only export and ``from_pretrained``: a trained run (Frey Face, real data shipped in
the package) exported to safetensors + JSON and loaded back gives the same model as its
checkpoint; the folder holds no pickle; broken folders fail with one line; a Hub repo id goes
through huggingface_hub's own cache (offline), and local folders need no huggingface_hub."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import sigmavae
from sigmavae.cli import main
from sigmavae.objective import elbo_terms, prepare_batch
from sigmavae.run import (
    ConfigError,
    ExportError,
    TrainConfig,
    build_vae,
    export_checkpoint,
    load_pretrained,
    load_trained,
    save_pretrained,
)
from sigmavae.run.export import EXPORT_FILES
from sigmavae.training import Trainer

SHAPE = (1, 28, 20)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (short) run on Frey Face: the optimal-sigma head's running variance has moved."""
    out = tmp_path_factory.mktemp("runs") / "frey"
    config = TrainConfig(data="frey", latent_dim=4, epochs=1, batch_size=32, train_subset=96,
                         val_subset=32, num_samples=4, out=str(out), progress=False,
                         speed_hint=False)
    Trainer(config).fit()
    return out


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "frey-vae"
    export_checkpoint(run, folder)
    return folder


def _images(n: int = 8) -> torch.Tensor:
    from sigmavae.data import load_dataset

    return load_dataset("frey", "test").images[:n]


def test_export_then_from_pretrained_gives_the_checkpoints_model(run: Path, exported: Path):
    reference, config = load_trained(run / "checkpoints" / "last.ckpt")
    model = sigmavae.from_pretrained(exported)
    assert not model.training and type(model) is type(reference)
    # every parameter and buffer, bit for bit; the head's running sigma state is among them
    expected, got = reference.state_dict(), model.state_dict()
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert float(model.head.running_var) != 1.0  # moved from its initial value by training
    assert torch.equal(model.head.running_var, reference.head.running_var)
    # and so the same numbers: decoder outputs of the same z, log p(x|z), q(z|x)
    images = _images()
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(images.shape[0], model.latent_dim, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(model.generate(noise), reference.generate(noise), rtol=0,
                                   atol=0)
        a = elbo_terms(model, images, noise=noise)
        b = elbo_terms(reference, images, noise=noise)
        torch.testing.assert_close(a.nll, b.nll, rtol=0, atol=0)  # -log p(x|z), nats
        torch.testing.assert_close(a.kl, b.kl, rtol=0, atol=0)
        x, _ = prepare_batch(images, model.head)
        q = model.posterior(x)
    assert q.mean.shape == q.stddev.shape == (8, 4)
    # the config that rebuilds it, and the card's numbers from the run's final.json
    _, loaded_config = load_pretrained(exported)
    assert loaded_config == config.replace(out=TrainConfig().out, data_root=None)
    final = json.loads((run / "final.json").read_text())
    assert f"{final['val_neg_elbo']:.2f} nats/example" in (exported / "README.md").read_text()


def test_export_holds_weights_only_no_pickle(run: Path, exported: Path):
    assert sorted(p.name for p in exported.iterdir()) == sorted(EXPORT_FILES)
    weights = exported / "model.safetensors"
    # the safetensors layout, read by hand: an 8-byte length, a JSON header, raw tensor bytes
    # and nothing else (so no pickle anywhere: json and raw numbers only)
    raw = weights.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert header.pop("__metadata__") == {"format": "pt", "sigmavae": "sigmavae-export-v1"}
    ends = sorted(entry["data_offsets"][1] for entry in header.values())
    assert 8 + header_len + ends[-1] == len(raw)
    state = load_trained(run / "checkpoints" / "last.ckpt")[0].state_dict()
    assert set(header) == set(state)
    assert sum(t.numel() * t.element_size() for t in state.values()) == ends[-1]
    # Adam's two moments are gone: about a third of the checkpoint
    checkpoint_bytes = (run / "checkpoints" / "last.ckpt").stat().st_size
    assert len(raw) < 0.4 * checkpoint_bytes
    description = json.loads((exported / "config.json").read_text())
    assert description["data_shape"] == list(SHAPE) and description["latent_dim"] == 4
    assert description["sigmavae_version"] == sigmavae.__version__
    assert "data_root" not in description["train_config"]  # no places on the trainer's disk
    assert "out" not in description["train_config"]
    assert description["data_scaling"] == "continuous density on 8-bit data / 255 in [0, 1]"


def test_cli_export_prints_sizes_and_refuses_to_overwrite(run: Path, tmp_path: Path, capsys):
    out = tmp_path / "shared"
    assert main(["export", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "last.ckpt" in printed and "model.safetensors" in printed and "MB" in printed
    assert f"sigmavae.from_pretrained('{out}')" in printed
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not empty" in err and "--overwrite" in err
    assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # other files are left alone
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _broken(exported: Path, tmp_path: Path, edit: Any) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(exported, folder)
    edit(folder)
    return folder


def _edit_config(**changes: Any) -> Any:
    def edit(folder: Path) -> None:
        path = folder / "config.json"
        description = json.loads(path.read_text())
        for key, value in changes.items():
            if key.startswith("train_config."):
                description["train_config"][key.split(".", 1)[1]] = value
            else:
                description[key] = value
        path.write_text(json.dumps(description))
    return edit


@pytest.mark.parametrize(("edit", "error", "words"), [
    (lambda f: (f / "model.safetensors").unlink(), ExportError, ["has no model.safetensors"]),
    (lambda f: (f / "config.json").unlink(), ExportError, ["has no config.json"]),
    (lambda f: (f / "config.json").write_text("{not json"), ExportError, ["not valid JSON"]),
    (_edit_config(format="other-v9"), ExportError, ["'other-v9'", "sigmavae-export-v1"]),
    (_edit_config(**{"train_config.latent_dim": 5}), ExportError,
     ["does not fit the model", "wrong shape", "file [8", "model [10"]),
    (_edit_config(**{"train_config.likelihood": "per_pixel_sigma"}), ExportError,
     ["does not fit", "per_pixel_sigma", "wrong shape"]),
    (_edit_config(**{"train_config.epochz": 3}), ConfigError, ["unknown key", "epochz"]),
    (_edit_config(data_shape=[1, 28]), ExportError, ["cannot rebuild the model", "(1, 28)"]),
    (_edit_config(data_shape="big"), ExportError, ["data_shape must be positive integers"]),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
     ExportError, ["not a readable safetensors"]),
], ids=["no-weights", "no-config", "bad-json", "format", "latent", "head", "unknown-key",
        "shape", "shape-type", "truncated"])
def test_a_broken_folder_fails_with_one_line(exported: Path, tmp_path: Path, edit: Any,
                                             error: type, words: list[str]):
    folder = _broken(exported, tmp_path, edit)
    with pytest.raises(error) as info:
        sigmavae.from_pretrained(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message, message
    for word in words:
        assert word in message, message


def test_a_checkpoint_file_or_a_missing_folder_is_named(run: Path, tmp_path: Path):
    with pytest.raises(ExportError, match="is a file; expected an exported model folder"):
        sigmavae.from_pretrained(run / "checkpoints" / "last.ckpt")
    with pytest.raises(ExportError, match=r"not a folder .*load_trained"):
        load_pretrained(run / "checkpoints" / "last.ckpt")


def _hub_cache(cache: Path, repo_id: str, files_from: Path) -> str:
    """The Hugging Face Hub cache of a downloaded ``repo_id`` (its documented layout:
    ``models--OWNER--NAME/refs/main`` -> ``snapshots/COMMIT/``), filled from a local export."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(files_from, repo / "snapshots" / commit)
    return commit


def test_a_hub_repo_id_loads_through_huggingface_hub_offline(exported: Path, tmp_path: Path):
    pytest.importorskip("huggingface_hub")  # the optional hub extra (installed with dev)
    cache = tmp_path / "hub"
    _hub_cache(cache, "someone/frey-vae", exported)
    model = sigmavae.from_pretrained("someone/frey-vae", cache_dir=cache, local_files_only=True)
    local = sigmavae.from_pretrained(exported)
    assert not model.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 local.state_dict().values(), strict=True))
    with pytest.raises(ExportError) as info:
        sigmavae.from_pretrained("someone/other", cache_dir=cache, local_files_only=True)
    assert "\n" not in str(info.value)
    assert "neither a folder here nor a model on the Hugging Face Hub" in str(info.value)


def test_the_model_card_is_a_valid_hub_card(exported: Path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    card = huggingface_hub.ModelCard.load(exported / "README.md")
    assert card.data.library_name == "sigmavae"
    assert {"sigmavae", "optimal_sigma", "conv"} <= set(card.data.tags)
    assert "sigmavae.from_pretrained" in card.text


def test_local_folders_need_no_huggingface_hub(exported: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub fails
    assert not sigmavae.from_pretrained(exported).training
    with pytest.raises(ExportError, match=r'pip install "sigmavae\[hub\]"'):
        sigmavae.from_pretrained("someone/frey-vae")
    with pytest.raises(ExportError, match="push_to_hub needs huggingface_hub"):
        sigmavae.push_to_hub(exported, "someone/frey-vae")


def test_push_to_hub_checks_the_folder_then_uploads_the_export_files(exported: Path,
                                                                     tmp_path: Path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls: list[tuple[str, dict[str, Any]]] = []

    class FakeApi:  # records what would go over the network
        def __init__(self, token: str | None = None) -> None:
            calls.append(("init", {"token": token}))

        def create_repo(self, **kwargs: Any) -> Any:
            calls.append(("create_repo", kwargs))
            return huggingface_hub.RepoUrl("https://huggingface.co/someone/frey-vae")

        def upload_folder(self, **kwargs: Any) -> Any:
            calls.append(("upload_folder", kwargs))
            return "https://huggingface.co/someone/frey-vae/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = sigmavae.push_to_hub(exported, "someone/frey-vae", private=True, token="t")
    assert url.endswith("/commit/abc")
    assert calls[1] == ("create_repo", {"repo_id": "someone/frey-vae", "private": True,
                                        "exist_ok": True, "repo_type": "model"})
    upload = calls[2][1]
    assert upload["repo_id"] == "someone/frey-vae" and upload["folder_path"] == str(exported)
    assert upload["allow_patterns"] == list(EXPORT_FILES)
    calls.clear()
    with pytest.raises(ExportError, match=r"has no config\.json"):
        sigmavae.push_to_hub(tmp_path, "someone/frey-vae")
    assert calls == []  # nothing is sent for a broken folder


def test_save_pretrained_of_a_float64_discrete_model(tmp_path: Path):
    """A model in memory (no checkpoint), trained in float64 with a discrete head: the dtype
    and the data scaling come back with it."""
    config = TrainConfig(latent_dim=3, likelihood="bitwise_categorical", precision="64-true")
    model = build_vae(config, SHAPE).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    save_pretrained(model, config, tmp_path / "m")
    loaded, _ = load_pretrained(tmp_path / "m")
    assert next(loaded.parameters()).dtype == torch.float64
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 model.state_dict().values(), strict=True))
    description = json.loads((tmp_path / "m" / "config.json").read_text())
    assert description["data_scaling"] == "discrete mass on 8-bit intensities 0..255"
    assert description["trained"] == {}


def test_eval_and_sample_take_an_export_folder_or_a_run_folder(run: Path, exported: Path,
                                                               tmp_path: Path, capsys):
    """A downloaded export is used as a checkpoint is: `sigmavae eval` gives the same ELBO for
    the export folder, the run folder and the checkpoint file; `sigmavae sample` draws from it."""
    from sigmavae.metrics.report import evaluate_checkpoint

    values = []
    for source in (run / "checkpoints" / "last.ckpt", run, exported):
        report = evaluate_checkpoint(source, ["elbo"], limit=16, elbo_samples=1, device="cpu")
        values.append(report.report["metrics"]["elbo"]["single_sample"]["neg_elbo_nats_per_image"])
    assert values[0] == pytest.approx(values[1], abs=0) and values[0] == pytest.approx(values[2])
    out = tmp_path / "grid.png"
    assert main(["sample", str(exported), "--n", "4", "--out", str(out)]) == 0 and out.is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["sample", str(empty), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "is a folder with neither model.safetensors (an exported model) nor "
        "checkpoints/last.ckpt (a run); give one of these or a checkpoint file")
