"""Presets: which data, sizes and settings an experiment runs with.

``--preset quick|paper-length|paper``: the name says the budget a result comes from.

``paper`` is App. B of the paper: SVHN at 28x28 for the small conv model (Table 1, Figures 4 and
9, Table 2's SVHN column), CIFAR-10 at 32x32 for Tables 3 and 4, Adam 1e-3, batch 128, 10 epochs,
the whole training split. It needs the data sets (torchvision's layouts) and, to finish in hours, a
GPU.

``paper-length`` trains every model as long as App. B on the data that is shipped beside the
project (``shared/data``): the CIFAR-10 JPEG copy at 32x32 for every table and figure (so runs
that are one configuration on one data set are shared between tables, and compared with the
paper's CIFAR column), 16 epochs of its 45,000 training images = 5,632 Adam steps (App. B: 5,730),
every metric on the whole test split. Hours per run on 2 CPU cores.

``quick`` is what finishes in minutes on 2 CPU cores from the same files: the CIFAR-10 JPEG copy
resized to 28x28 stands in for SVHN (both are 32x32 RGB photographs of objects or digits,
resized as the paper resized SVHN); the CIFAR-10 JPEG copy at 32x32 for CIFAR-10; 4,000 training
images, 4 epochs (about 125 steps), 2,000 test images. For trying the command and for the
tests: its verdicts measure the budget, not the method. Every stand-in and reduction is written
into each report.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .heads import SWEEP_BETAS


class ExperimentError(ValueError):
    """An experiment cannot run as asked (missing data, a bad option); one line, names it."""


@dataclass(frozen=True)
class DataChoice:
    """One data set an experiment trains on.

    ``key`` names it in run ids; ``label`` is how reports name it ("CIFAR-10 (JPEG copy) at
    28x28, the stand-in for SVHN"); ``stands_in_for`` is the paper's data set it replaces.
    """

    key: str
    data: str
    data_root: str | None
    data_options: dict[str, Any]
    label: str
    stands_in_for: str | None = None
    #: whether its training split has class labels (what the FID feature classifier learns
    #: from), known without reading it; None: only reading the split tells
    labelled: bool | None = None

    def train_keys(self) -> dict[str, Any]:
        """The TrainConfig keys of this data choice."""
        return {"data": self.data, "data_root": self.data_root,
                "data_options": dict(self.data_options)}


@dataclass(frozen=True)
class Preset:
    """Sizes and settings shared by every run of an experiment."""

    name: str
    train_subset: int | None  # training images (None: the whole split)
    val_subset: int | None
    epochs: int
    batch_size: int
    lr: float
    seeds: int  # default number of seeds per configuration
    eval_images: int | None  # test images every metric uses (None: the whole split)
    fid_samples: int
    mi_data: int
    elbo_samples: int
    log_every_n_steps: int
    classifier_epochs: int
    classifier_images: int | None
    hierarchical: bool  # whether Table 2's hierarchical columns are run
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: the training precision ("auto": bf16 where the hardware has it; see training.fastpath)
    precision: str = "32-true"
    #: seeds of the heavy heads (heads.HEAVY_HEADS) in the decoder tables (None: ``seeds``)
    heavy_head_seeds: int | None = None
    #: betas Table 1's sweep adds to the paper's decade grid (``heads.SWEEP_BETAS``) to locate
    #: the best fixed beta more finely; Figures 4 and 9 stay on the decade grid
    refine_betas: tuple[float, ...] = ()

    def table1_betas(self) -> tuple[float, ...]:
        """The betas of Table 1's sweep, ascending: the paper's decades and ``refine_betas``."""
        return tuple(sorted({*SWEEP_BETAS, *self.refine_betas}))

    def train_keys(self) -> dict[str, Any]:
        keys: dict[str, Any] = {
            "train_subset": self.train_subset, "val_subset": self.val_subset,
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "log_every_n_steps": self.log_every_n_steps}
        if self.precision != "32-true":  # the default stays out of run ids
            keys["precision"] = self.precision
        return keys


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper", train_subset=None, val_subset=None, epochs=10, batch_size=128, lr=1e-3,
        seeds=3, eval_images=None, fid_samples=10_000, mi_data=10_000, elbo_samples=1,
        log_every_n_steps=10, classifier_epochs=10, classifier_images=None, hierarchical=True,
        notes=("App. B settings: Adam 1e-3, batch 128, 10 epochs, the whole training split.",)),
    "quick": Preset(
        name="quick", train_subset=4000, val_subset=1000, epochs=4, batch_size=128, lr=1e-3,
        seeds=3, eval_images=2000, fid_samples=2000, mi_data=2000, elbo_samples=1,
        log_every_n_steps=5, classifier_epochs=3, classifier_images=10_000, hierarchical=False,
        notes=("Reduced to finish on 2 CPU cores: 4,000 training images (not the whole split), "
               "4 epochs (not 10), 2,000 test images for every metric, FID from 2,000 prior "
               "samples; Adam 1e-3 and batch 128 as in App. B.",
               "The hierarchical-VAE columns of Table 2 are not run (hours per run on a CPU); "
               "--preset paper runs them.",
               "A preset for trying the command: its verdicts measure a budget 45x shorter than "
               "the paper's; --preset paper-length trains every model as long as the paper.")),
    "paper-length": Preset(
        name="paper-length", train_subset=None, val_subset=1000, epochs=16, batch_size=128,
        lr=1e-3, seeds=3, eval_images=None, fid_samples=10_000, mi_data=10_000, elbo_samples=1,
        log_every_n_steps=10, classifier_epochs=5, classifier_images=None, hierarchical=False,
        precision="auto", heavy_head_seeds=1,
        # added after the decade grid's runs: the learned sigma-VAE's effective beta (0.027)
        # lay between the grid's best beta by the bound (0.1) and its neighbour 0.01
        refine_betas=(0.03,),
        notes=("The paper's training length on the shipped data: every model is trained on the "
               "CIFAR-10 JPEG copy at 32x32 (45,000 training images after the validation "
               "split) for 16 epochs at batch 128 = 5,632 Adam steps (App. B: 10 epochs of "
               "SVHN's 73,257 images = 5,730 steps), Adam 1e-3; every metric on the whole "
               "10,000-image test split, FID from 10,000 prior samples.",
               "--precision auto: bf16-mixed + channels_last where the CPU computes bf16 in "
               "hardware, else float32 (each run's train.log says which).",
               "The hierarchical-VAE columns of Table 2 (CelebA and CIFAR, 11 decoders each) "
               "are not run: the paper does not state their training length, and at the 100 "
               "epochs of the shipped cifar10-hierarchical config one CIFAR-10 run is about 16 h "
               "on a 2-core CPU (78 images/s end to end, --precision auto on a CPU with AMX; "
               "benchmarks/model_throughput.py; CelebA's 162,770 training images take 3.6x "
               "that): about 34 days on 2 cores for the two columns at one seed.")),
}


def shared_data_dir() -> Path | None:
    """The project's ``shared/data`` folder: ``$SIGMAVAE_SHARED_DATA``, else ``../shared/data``
    relative to the working directory (the layout of a checkout beside its data), else None."""
    env = os.environ.get("SIGMAVAE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path.cwd().parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    return None


def cache_dir() -> Path:
    """Where extracted archives and trained feature classifiers are kept."""
    env = os.environ.get("SIGMAVAE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sigmavae"


def extract_cifar_jpeg(shared: Path) -> Path:
    """Extract ``cifar10-jpeg/{train,test}.tar`` once into the cache; the folder with
    ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``."""
    source = shared / "cifar10-jpeg"
    target = cache_dir() / "cifar10-jpeg"
    for split in ("train", "test"):
        done = target / f".{split}-extracted"
        if done.is_file():
            continue
        archive = source / f"{split}.tar"
        if not archive.is_file():
            raise ExperimentError(f"{archive} is missing; expected the CIFAR-10 "
                                  "JPEG archives of shared/data (or pass --data and --data-root)")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        done.touch()
    return target


def mnist_root(shared: Path) -> Path:
    """Copy ``mnist/t10k-*.gz`` once into the cache in torchvision's layout
    (``<root>/MNIST/raw``); the root, which the ``mnist`` and ``smmnist`` sets read."""
    root = cache_dir() / "mnist-t10k"
    raw = root / "MNIST" / "raw"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        source, target = shared / "mnist" / name, raw / name
        if target.is_file() and target.stat().st_size == source.stat().st_size:
            continue
        if not source.is_file():
            raise ExperimentError(f"{source} is missing; expected the MNIST test "
                                  "files of shared/data (or pass --data and --data-root)")
        raw.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copyfile(source, partial)
        partial.replace(target)  # atomic: a half-copied file is never taken for the data
    return root


def _video_data(preset: Preset, role: str, prepare: bool) -> DataChoice:
    """The video roles: ``"smmnist"`` (SVG-LP on Stochastic Moving MNIST) and ``"bair"``."""
    if role == "bair":
        if preset.name != "paper":
            raise ExperimentError(
                "the bair experiment (Table 2's BAIR column) runs with --preset paper (the "
                "BAIR release in data/bair, a GPU for days) or on data you name with --data "
                "bair --data-root DIR; the BAIR data is not shipped for the quick or "
                "paper-length presets")
        return DataChoice("bair", "bair", "data/bair", {"frames": 12},
                          "BAIR robot pushing (softmotion30_44k), 64x64 RGB, 2 + 10 frames "
                          "in training")
    if preset.name == "paper":
        return DataChoice("smmnist", "smmnist", "data/mnist",
                          {"frames": 15, "digits": 2, "mnist_split": "both",
                           "sequences": 60_000},
                          "Stochastic Moving MNIST, 2 digits, 5 + 10 frames, train digits from "
                          "the MNIST train file and test digits from t10k (SVG's setting)")
    return DataChoice("smmnist-t10k", "smmnist",
                      str(mnist_root(_shared(preset)) if prepare else cache_dir() / "mnist-t10k"),
                      {"frames": 15, "digits": 2},
                      "Stochastic Moving MNIST, 2 digits, 5 + 10 frames, generated from the "
                      "shipped MNIST test file (its digits carved into disjoint train, val and "
                      "test pools)", stands_in_for="SM-MNIST from the MNIST train digits")


def _shared(preset: Preset) -> Path:
    shared = shared_data_dir()
    if shared is None:
        raise ExperimentError(f"{preset.name} preset: no shared/data folder found (set "
                              "SIGMAVAE_SHARED_DATA, run from the project folder beside "
                              "shared/, or pass --data and --data-root)")
    return shared


def default_data(preset: Preset, role: str, prepare: bool = True) -> DataChoice:
    """The data a preset uses for ``role``: ``"svhn"`` (Table 1, Figures 4 and 9, Table 2's conv
    column), ``"cifar"`` (Tables 3 and 4), ``"smmnist"`` or ``"bair"`` (the video
    experiments). ``prepare=False`` names the shipped data's cache folders without extracting
    anything (``--collect``: run ids only)."""
    if role in ("smmnist", "bair"):
        return _video_data(preset, role, prepare)
    if preset.name == "paper":
        if role == "svhn":
            return DataChoice("svhn28", "svhn", "data/svhn", {"image_size": 28},
                              "SVHN at 28x28 (App. B)", labelled=True)
        return DataChoice("cifar10", "cifar10", "data/cifar10", {}, "CIFAR-10 at 32x32",
                          labelled=True)
    root = str(extract_cifar_jpeg(_shared(preset)) if prepare else cache_dir() / "cifar10-jpeg")
    if preset.name == "paper-length":  # one data set for every table: runs are shared
        return DataChoice("cifar32", "folder", root, {"labels": True, "shuffle": True},
                          "CIFAR-10 (JPEG copy) at 32x32", stands_in_for="CIFAR-10",
                          labelled=True)
    if role == "svhn":
        return DataChoice("cifar28", "folder", root,
                          {"image_size": 28, "labels": True, "shuffle": True},
                          "CIFAR-10 (JPEG copy) resized to 28x28", stands_in_for="SVHN",
                          labelled=True)
    return DataChoice("cifar32", "folder", root, {"labels": True, "shuffle": True},
                      "CIFAR-10 (JPEG copy) at 32x32", stands_in_for="CIFAR-10", labelled=True)


def user_data(data: str, data_root: str | None, data_options: dict[str, Any]) -> DataChoice:
    """The data the user named with ``--data``/``--data-root``/``--data-option``."""
    key = data.replace(":", "-")
    if data_options.get("image_size"):
        key += str(data_options["image_size"])
    return DataChoice(key, data, data_root, dict(data_options), f"{data} (chosen with --data)",
                      labelled=known_labels(data, data_options))


#: Registered data sets whose training split always (True) or never (False) has class labels.
LABELLED_SETS = {"mnist": True, "cifar10": True, "svhn": True, "frey": False, "celeba": False,
                 "smmnist": False, "bair": False, "video_folder": False}


def known_labels(data: str, data_options: dict[str, Any]) -> bool | None:
    """Whether data set ``data`` has class labels, known from its name and options alone (an
    image folder has them with ``labels=True``); None where only its files tell (``npz``, a
    data set registered by the user)."""
    if data == "folder":
        return bool(data_options.get("labels", False))
    return LABELLED_SETS.get(data)


def with_seeds(preset: Preset, seeds: int | None) -> Preset:
    if seeds is None:
        return preset
    if seeds < 1:
        raise ExperimentError(f"--seeds must be >= 1, got {seeds}")
    return replace(preset, seeds=seeds)
