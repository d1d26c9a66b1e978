"""The FID features of an experiment's data: a small classifier trained once on the labelled
training split (``classifier:PATH``, cached), or the raw pixels where the data has no labels.

The classifier's file is named by the data and the preset's classifier budget, written as on
any machine (:func:`.runs.portable`: a data root inside the cache counts by its place in the
cache), so that a plan names the file before it exists (:func:`planned_features`) and its
``--prepare`` step, run elsewhere, trains exactly that file (:func:`fid_classifier`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from .presets import DataChoice, Preset, cache_dir
from .runs import portable

#: Folder of the trained classifiers inside the cache.
CLASSIFIERS = "fid-classifiers"


def classifier_file(data: DataChoice, preset: Preset) -> str:
    """The classifier's file name, e.g. ``cifar28-1a2b3c4d5e.safetensors``: the same for the
    same data and classifier budget on every machine."""
    return _named(data, preset, portable(data.train_keys()))


def _named(data: DataChoice, preset: Preset, keys: dict[str, object]) -> str:
    key = json.dumps({**keys, "epochs": preset.classifier_epochs,
                      "images": preset.classifier_images}, sort_keys=True)
    return f"{data.key}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.safetensors"


def _no_labels_note(data: DataChoice) -> str:
    return (f"{data.label} has no class labels: Fréchet distance of the raw pixels (a weak "
            "proxy; not Inception, not comparable with published FIDs)")


def fid_classifier(data: DataChoice, preset: Preset, log: Callable[[str], None],
                   runs: Path | None = None) -> tuple[str, str]:
    """The ``--fid-features`` of ``data`` and the note reports print: the classifier in the
    cache, trained on its labelled training split first if it is not there (minutes), or the
    pixels where the data has no labels (read from the data).

    With ``runs`` (a run store's folder), the classifier is the one kept there, in
    ``runs/fid-classifiers/``, if any (the one its runs were evaluated with, which came with
    the runs' records from another machine); else the cache's is copied there, so that a run
    folder, and the records exported from it, keep the extractor their FIDs need."""
    from ..data import load_dataset
    from ..metrics.fid_classifier import load_classifier_features, train_classifier

    name = classifier_file(data, preset)
    kept = runs / CLASSIFIERS / name if runs is not None else None
    if kept is not None and kept.is_file():
        return f"classifier:{kept}", load_classifier_features(kept).describe()
    folder = cache_dir() / CLASSIFIERS
    path = folder / name
    # a classifier trained before file names were machine-independent (named by the absolute
    # data root) is still the one its runs were evaluated with: keep using it
    legacy = folder / _named(data, preset, data.train_keys())
    if not path.is_file() and legacy.is_file():
        path = legacy
    if not path.is_file():
        options = dict(data.data_options)
        train = load_dataset(data.data, "train", data.data_root, **options)
        if train.labels is None:
            return "pixels", _no_labels_note(data)
        test = load_dataset(data.data, "test", data.data_root, **options)
        log(f"experiment: training the FID feature classifier on {data.label} "
            f"({min(len(train), preset.classifier_images or len(train))} labelled images)")
        train_classifier(train.images, train.labels, path, data=data.label,
                         test_images=test.images, test_labels=test.labels,
                         epochs=preset.classifier_epochs, max_images=preset.classifier_images)
    if kept is not None:
        copy_classifier(path, kept)
        path = kept
    return f"classifier:{path}", load_classifier_features(path).describe()


def copy_classifier(source: Path, target: Path) -> None:
    """Copy a saved classifier (weights and its ``.json`` info) to ``target``: the info first
    and the weights last, each through a temporary file, so that a weights file present means a
    complete copy (as :func:`~sigmavae.metrics.fid_classifier.train_classifier` writes one)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", target.suffix):
        partial = target.with_name(target.stem + suffix + ".partial")
        shutil.copyfile(source.with_suffix(suffix), partial)
        partial.replace(target.with_suffix(suffix))


def keep_classifiers(runs: Path, records: Path) -> None:
    """Copy the classifiers kept in a run folder (``runs/fid-classifiers/``) into the records
    folder beside the run records (where they are not there already)."""
    for weights in sorted((runs / CLASSIFIERS).glob("*.safetensors")):
        target = records / CLASSIFIERS / weights.name
        if weights.resolve() != target.resolve() and (
                not target.is_file() or target.read_bytes() != weights.read_bytes()):
            copy_classifier(weights, target)


def planned_features(data: DataChoice, preset: Preset, cache: Path,
                     log: Callable[[str], None]) -> str:
    """The ``--fid-features`` a plan's evaluations of ``data`` use, decided without training
    anything: ``classifier:CACHE/fid-classifiers/FILE`` (the plan's prepare step trains it)
    where the data has labels, else ``pixels``. Only a data set whose labels its name does not
    tell (:attr:`DataChoice.labelled` None: ``npz``, a user's set) has its training split read
    to find out."""
    labelled = data.labelled
    if labelled is None:
        from ..data import load_dataset

        log(f"experiment: reading the training split of {data.label} to learn whether it has "
            "class labels (for the FID features)")
        train = load_dataset(data.data, "train", data.data_root, **dict(data.data_options))
        labelled = train.labels is not None
    if not labelled:
        return "pixels"
    return f"classifier:{(cache / CLASSIFIERS / classifier_file(data, preset)).as_posix()}"
