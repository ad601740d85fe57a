"""Errors that the command line reports as one line and a non-zero exit."""


class I2FError(Exception):
    """Base class: a problem the user can fix (bad input, wrong file, missing backend).

    ``http_status`` is the status a server answers it with: each class that a server raises
    for another reason (an unknown id, a limit reached) says its own."""

    http_status = 422


class ConfigError(I2FError):
    """An export configuration is unknown or malformed."""


class CheckpointError(I2FError):
    """A checkpoint cannot be read or does not fit the configured model."""


class InputError(I2FError):
    """An image, click or prompt map is malformed."""
