"""Data: datasets by name (``datasets``), label noise, human label files, image folders and
the on-device batches that training draws."""

from sparsedd.data import imagefolder  # noqa: F401  registers the "imagefolder" dataset
