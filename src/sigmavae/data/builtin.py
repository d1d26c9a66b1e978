"""Imports every built-in loader module so that each registers itself."""

from . import celeba, cifar10, folder, frey, mnist, npz, svhn

__all__ = ["celeba", "cifar10", "folder", "frey", "mnist", "npz", "svhn"]
