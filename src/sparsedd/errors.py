"""Errors a user can fix: the CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """Bad input (config, file, name) that the user can fix; the message says how."""


class ConfigError(UserError):
    """A config key or value that is not allowed."""


class DataError(UserError):
    """A dataset that is missing, truncated or corrupt."""


class CheckpointError(UserError):
    """A checkpoint that is corrupt, truncated or does not match the model."""


class StoreError(UserError):
    """A results database or output folder that cannot be used."""


class NoResultsError(StoreError):
    """An output folder with no results yet (no database, or one another run is creating)."""


class ResourceError(UserError):
    """The machine ran out of something (GPU memory, disk) that a setting can reduce."""


class DivergedError(UserError):
    """Training produced a non-finite loss or weight; a smaller learning rate usually helps."""


class Interrupted(Exception):
    """Raised between epochs after a stop was requested and progress was saved."""


class PluginError(UserError):
    """An installed plugin (a ``sparsedd.components`` entry point) that fails to load."""
