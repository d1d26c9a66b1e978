"""Imports every built-in loader module so that each registers itself."""

from . import bair, celeba, cifar10, folder, frey, mnist, npz, smmnist, svhn, video_folder

__all__ = ["bair", "celeba", "cifar10", "folder", "frey", "mnist", "npz", "smmnist", "svhn",
           "video_folder"]
