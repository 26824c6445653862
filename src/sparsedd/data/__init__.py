"""Data: datasets by name (``datasets``), label noise, human label files, image folders and
the on-device batches that training draws.

Every module of this package is imported here, so that a dataset in a new file (as
``imagefolder``) registers itself with no other edit.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
