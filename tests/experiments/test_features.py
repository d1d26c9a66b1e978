"""The FID classifier's file: named the same on every machine (a plan names it before it
exists), one trained before that naming is still found and used, and the one a runs folder
keeps (the one its runs were scored with) wins over the cache's."""

from __future__ import annotations

import pytest
import torch

import sigmavae.metrics.fid_classifier as fid_module
from sigmavae.experiments.features import _named, classifier_file, fid_classifier, keep_classifiers
from sigmavae.experiments.presets import PRESETS, DataChoice, cache_dir, known_labels

QUICK = PRESETS["quick"]


def _shipped(options: dict[str, object] | None = None) -> DataChoice:
    """The quick preset's CIFAR copy as extracted into the current cache."""
    return DataChoice("cifar28", "folder", str(cache_dir() / "cifar10-jpeg"),
                      dict(options or {"image_size": 28, "labels": True}), "CIFAR-10 copy",
                      labelled=True)


def test_the_name_does_not_depend_on_where_the_cache_is(tmp_path, monkeypatch):
    names = []
    for home in ("alice", "cluster/plan/cache"):
        monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / home))
        names.append(classifier_file(_shipped(), QUICK))
    assert names[0] == names[1] and names[0].startswith("cifar28-")
    # what it is trained on and for how long is part of it
    assert classifier_file(_shipped({"image_size": 32, "labels": True}), QUICK) != names[0]
    assert classifier_file(_shipped(), PRESETS["paper-length"]) != names[0]


def test_a_classifier_named_the_old_way_is_still_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    data = _shipped()
    # named by the absolute data root, as before: the runs evaluated with it keep it
    legacy = cache_dir() / "fid-classifiers" / _named(data, QUICK, data.train_keys())
    assert legacy.name != classifier_file(data, QUICK)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=generator)
    fid_module.train_classifier(images, torch.arange(16) % 2, legacy, data=data.label,
                                epochs=1)

    def no_training(*args, **kwargs):
        raise AssertionError("trained a new classifier beside the old one")

    monkeypatch.setattr(fid_module, "train_classifier", no_training)
    features, note = fid_classifier(data, QUICK, log=lambda m: None)
    assert features == f"classifier:{legacy}" and "16 labelled" in note


@pytest.mark.parametrize(("data", "options", "expected"), [
    ("mnist", {}, True), ("frey", {}, False), ("folder", {"labels": True}, True),
    ("folder", {}, False), ("npz", {}, None)])
def test_labels_known_from_the_name(data, options, expected):
    assert known_labels(data, options) is expected


def _train_tiny(path, data: DataChoice, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=generator)
    fid_module.train_classifier(images, torch.arange(16) % 2, path, data=data.label, epochs=1,
                                seed=seed)


def test_the_runs_folder_keeps_the_classifier_its_runs_were_scored_with(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    data, runs = _shipped(), tmp_path / "runs"
    cached = cache_dir() / "fid-classifiers" / classifier_file(data, QUICK)
    _train_tiny(cached, data, seed=0)
    features, note = fid_classifier(data, QUICK, log=lambda m: None, runs=runs)
    kept = runs / "fid-classifiers" / cached.name
    assert features == f"classifier:{kept}"
    assert kept.read_bytes() == cached.read_bytes() and kept.with_suffix(".json").is_file()
    assert f"weights sha256 {fid_module.weights_digest(cached)}" in note
    # another machine's cache holds another classifier (retrained: other weights); the runs
    # folder, come with the runs' records, still gives the one they were scored with
    _train_tiny(cached, data, seed=1)
    assert fid_module.weights_digest(cached) != fid_module.weights_digest(kept)
    again, again_note = fid_classifier(data, QUICK, log=lambda m: None, runs=runs)
    assert again == features and again_note == note


def test_records_take_the_kept_classifiers_along(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGMAVAE_CACHE", str(tmp_path / "cache"))
    data, runs, records = _shipped(), tmp_path / "runs", tmp_path / "records"
    _train_tiny(runs / "fid-classifiers" / classifier_file(data, QUICK), data, seed=0)
    keep_classifiers(runs, records)
    keep_classifiers(runs, records)  # a second export changes nothing
    kept = sorted(p.name for p in (records / "fid-classifiers").iterdir())
    name = classifier_file(data, QUICK)
    assert kept == [name.replace(".safetensors", ".json"), name]
    loaded = fid_module.load_classifier_features(records / "fid-classifiers" / name)
    assert loaded.digest == fid_module.weights_digest(runs / "fid-classifiers" / name)
