"""Errors a user can act on. Each carries its user-facing text and what the caller needs as data.

The app, the API and the command line show `str(error)` as is; they decide what to do from the
error's type and fields (`exit_code`, `missing`, `download_error`), never from its text.
"""
from __future__ import annotations

from typing import Optional, Sequence


class UserError(Exception):
    """An error whose message is written for the person running the tool."""

    exit_code = 1
    """The command line's exit status for this kind of error."""


class InputError(UserError, ValueError):
    """Something the user gave (a file, a mask, a setting) cannot be used; the message says why."""

    exit_code = 2


class CheckpointError(UserError, RuntimeError):
    """A model checkpoint is missing, partial or malformed; the message names it and how to get it.

    `missing`: one line per part that could not be had; `download_error`: why fetching them failed,
    when a download was tried and failed (no network, hub refused), else None.
    """

    exit_code = 3

    def __init__(self, message: str, missing: Sequence[str] = (), download_error: Optional[str] = None) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.download_error = download_error

    def __reduce__(self):  # keep the fields through pickling (ZeroGPU sends errors across processes)
        return type(self), (str(self), self.missing, self.download_error)


class DeviceError(UserError, RuntimeError):
    """The compute device failed: out of memory, not present, or its driver refused the work."""

    exit_code = 4
