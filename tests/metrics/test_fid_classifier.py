"""The classifier features that stand in for Inception (``--fid-features classifier:PATH``)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from sigmavae.metrics.fid import FeatureExtractorError, build_fid_metric, check_fid_features
from sigmavae.metrics.fid_classifier import (
    FEATURE_DIM,
    load_classifier_features,
    train_classifier,
)


def _two_classes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark images (class 0) and bright ones (class 1), 3x12x12 uint8, with noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = torch.where(labels[:, None, None, None] == 1, 200.0, 50.0)
    images = (base + 20 * torch.randn(n, 3, 12, 12, generator=g)).clamp(0, 255)
    return images.round().to(torch.uint8), labels


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "toy.safetensors"
    images, labels = _two_classes(256, 0)
    test_images, test_labels = _two_classes(64, 1)
    info = train_classifier(images, labels, path, data="toy", test_images=test_images,
                            test_labels=test_labels, epochs=3, batch_size=32)
    return path, info


def test_trains_saves_and_classifies(saved):
    path, info = saved
    assert info.test_accuracy is not None and info.test_accuracy > 0.95
    assert (info.channels, info.image_size, info.num_classes) == (3, (12, 12), 2)
    extractor = load_classifier_features(path)
    assert extractor.info == info
    feats = extractor(torch.rand(5, 3, 12, 12))
    assert feats.shape == (5, FEATURE_DIM)
    # other sizes are resized to the training size: same features for an upsampled copy of a
    # constant image
    flat = torch.full((1, 3, 12, 12), 0.5)
    big = torch.full((1, 3, 24, 24), 0.5)
    assert torch.allclose(extractor(flat), extractor(big), atol=1e-5)


def test_fid_of_the_features_ranks_quality(saved):
    path, _ = saved
    spec = f"classifier:{path}"
    check_fid_features(spec, (3, 12, 12))
    metric, desc = build_fid_metric(spec, (3, 12, 12))
    assert "not comparable with published FIDs" in desc
    # the weights' digest: the same data, size and accuracy on another machine (retrained, other
    # weights) is described otherwise, so its FIDs are not compared with these
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert f"weights sha256 {digest}" in desc
    real, _ = _two_classes(128, 2)
    similar, _ = _two_classes(128, 3)
    real, similar = real.float() / 255, similar.float() / 255
    grey = torch.full_like(real, 0.5)  # every sample the same grey image: poor samples

    def fid(fake: torch.Tensor) -> float:
        metric.reset()
        metric.update(real, real=True)
        metric.update(fake, real=False)
        return float(metric.compute())

    assert fid(similar) < fid(grey)


@pytest.mark.parametrize("make", ["missing", "garbage"])
def test_bad_classifier_file_is_one_line(tmp_path, make):
    path = tmp_path / "clf.safetensors"
    if make == "garbage":
        path.write_bytes(b"not a safetensors file")
        path.with_suffix(".json").write_text("{}")
    with pytest.raises(FeatureExtractorError) as err:
        check_fid_features(f"classifier:{path}", (3, 12, 12))
    message = str(err.value)
    assert "\n" not in message and str(path) in message


def test_refuses_unlabelled_data(tmp_path):
    images, _ = _two_classes(8, 0)
    with pytest.raises(ValueError, match="label"):
        train_classifier(images, None, tmp_path / "x.safetensors", data="toy")
