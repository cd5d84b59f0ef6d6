"""Errors a user can act on. Their message is shown as is by the app and the command line."""


class InputError(ValueError):
    """Something the user gave (a file, a mask, a setting) cannot be used; the message says why."""


class CheckpointError(RuntimeError):
    """A model checkpoint is missing, partial or malformed; the message names it and how to get it."""
