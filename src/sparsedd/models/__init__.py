"""Models: the registry (``base``) and one module per family, each registering itself.

Every module of this package is imported here, so that a new family is one new file.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
