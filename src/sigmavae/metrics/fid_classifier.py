"""A small image classifier whose features stand in for Inception's in FID where its weights are
absent (any offline machine): ``--fid-features classifier:PATH``.

The network is trained once on the labelled training split of a data set (CIFAR-10's class
folders, MNIST's labels, ...) and saved with safetensors; its penultimate layer (``FEATURE_DIM``
ReLU units after global average pooling) gives the features of a Fréchet distance. Such a distance
ranks the sample quality of models of *that* data set: it is not comparable with a published FID
(other features, other N), and every report that uses it must say so.

Images reach the extractor as FID passes them: float RGB ``(N, 3, H, W)`` in [0, 1]; they are
resized (bilinear, antialiased) to the size the classifier was trained at and made grey again
for a grey-trained classifier.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Width of the feature vector (the classifier's penultimate layer).
FEATURE_DIM = 128


@dataclass(frozen=True)
class ClassifierInfo:
    """What a saved classifier was trained on and how well it classifies (stored beside it)."""

    data: str  # the data set's name, e.g. "folder:cifar10-jpeg"
    channels: int  # 1 (grey) or 3 (RGB)
    image_size: tuple[int, int]  # (H, W) it was trained at
    num_classes: int
    train_images: int
    epochs: int
    test_accuracy: float | None  # fraction of held-out images classified right
    seconds: float

    def describe(self, digest: str | None = None) -> str:
        """What the features are, for reports; ``digest`` (the weights file's, see
        :func:`weights_digest`) tells two classifiers of the same data and accuracy apart."""
        acc = "n/a" if self.test_accuracy is None else f"{100 * self.test_accuracy:.1f}%"
        weights = f", weights sha256 {digest}" if digest else ""
        return (f"classifier features ({FEATURE_DIM}-d, a small CNN trained on {self.train_images}"
                f" labelled {self.data} training images, held-out accuracy {acc}{weights}; not "
                "Inception: not comparable with published FIDs)")


class SmallClassifier(nn.Module):
    """Three conv blocks (32, 64, 128 channels; conv-BN-ReLU-pool) -> ``FEATURE_DIM`` -> classes.

    ``features(x)`` is ``(N, FEATURE_DIM)``; ``forward(x)`` the class logits ``(N, classes)``.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in = channels
        for width in (32, 64, 128):
            layers += [nn.Conv2d(width_in, width, 3, padding=1), nn.BatchNorm2d(width),
                       nn.ReLU(), nn.MaxPool2d(2)]
            width_in = width
        self.body = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Linear(128, FEATURE_DIM), nn.ReLU())
        self.classify = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.body(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class ClassifierFeatures(nn.Module):
    """FID feature extractor: RGB ``(N, 3, H, W)`` in [0, 1] -> ``(N, FEATURE_DIM)``."""

    def __init__(self, classifier: SmallClassifier, info: ClassifierInfo,
                 digest: str | None = None) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.info = info
        self.digest = digest  # of the weights file it was loaded from (None: built in memory)

    def describe(self) -> str:
        return self.info.describe(self.digest)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.info.channels == 1 and x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        if tuple(x.shape[-2:]) != tuple(self.info.image_size):
            x = F.interpolate(x, size=tuple(self.info.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        return self.classifier.features(x)


def _info_path(path: Path) -> Path:
    return path.with_suffix(".json")


def weights_digest(path: str | Path) -> str:
    """The first 12 hex digits of the SHA-256 of a classifier's weights file: FIDs are
    comparable only under the same digest (a classifier retrained on another machine, even with
    the same seed, has other weights: its float rounding differs)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


@torch.no_grad()
def accuracy(model: SmallClassifier, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 500) -> float:
    """Fraction of ``images`` (uint8 ``(N, C, H, W)``) whose predicted class is ``labels``."""
    model.eval()
    right = 0
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].float() / 255.0
        right += int((model(x).argmax(1) == labels[start:start + batch_size]).sum())
    return right / images.shape[0]


def train_classifier(images: torch.Tensor, labels: torch.Tensor, path: str | Path, *,
                     data: str, test_images: torch.Tensor | None = None,
                     test_labels: torch.Tensor | None = None, epochs: int = 3,
                     batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                     max_images: int | None = None) -> ClassifierInfo:
    """Train a :class:`SmallClassifier` on uint8 ``images`` ``(N, C, H, W)`` with int ``labels``
    ``(N,)`` and save it to ``path`` (safetensors) with its :class:`ClassifierInfo` beside it.

    ``max_images`` caps the training images (a seeded random sample); ``test_*`` give the held-out
    accuracy recorded in the info. Deterministic for a given ``seed``.
    """
    from safetensors.torch import save_file

    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"classifier: images must be uint8 (N, C, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    if labels is None or labels.shape[0] != images.shape[0]:
        raise ValueError("classifier: every training image needs a class label (the data set "
                         "has none: use a labelled set, e.g. folder with labels=true)")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    if max_images is not None and max_images < images.shape[0]:  # a random sample: data sorted
        rows = torch.randperm(images.shape[0], generator=gen)[:max_images]  # by class stays mixed
        images, labels = images[rows], labels[rows]
    torch.manual_seed(seed)
    num_classes = int(labels.max()) + 1
    model = SmallClassifier(images.shape[1], num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    n = images.shape[0]
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        for first in range(0, n, batch_size):
            rows = order[first:first + batch_size]
            loss = F.cross_entropy(model(images[rows].float() / 255.0), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    acc = None
    if test_images is not None and test_labels is not None:
        acc = accuracy(model, test_images, test_labels)
    info = ClassifierInfo(data=data, channels=images.shape[1],
                          image_size=(images.shape[2], images.shape[3]),
                          num_classes=num_classes, train_images=n, epochs=epochs,
                          test_accuracy=acc, seconds=time.perf_counter() - start)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    _info_path(path).write_text(json.dumps(asdict(info), indent=2) + "\n")
    tmp.replace(path)  # the weights file appears last: its presence means "complete"
    return info


def load_classifier_features(path: str | Path) -> ClassifierFeatures:
    """The feature extractor saved by :func:`train_classifier` at ``path``.

    Raises:
        ValueError: ``path`` or its ``.json`` info is missing or not a saved classifier (the
            message names the file and what was expected).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    info_path = _info_path(path)
    if not path.is_file() or not info_path.is_file():
        raise ValueError(f"classifier {path}: expected a weights file and its {info_path.name} "
                         "written by sigmavae's train_classifier (sigmavae experiment trains "
                         "one); missing")
    try:
        values = json.loads(info_path.read_text())
        values["image_size"] = tuple(values["image_size"])
        info = ClassifierInfo(**values)
        state = load_file(str(path))
    except (OSError, ValueError, TypeError, KeyError, SafetensorError) as err:
        raise ValueError(f"classifier {path}: not a saved sigmavae classifier ({err})") from None
    model = SmallClassifier(info.channels, info.num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"classifier {path}: weights do not match its info ({first})") from None
    return ClassifierFeatures(model, info, weights_digest(path))

