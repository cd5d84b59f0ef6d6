"""Checks on the files a run will write, made before any work starts, so that nothing a user gave
is ever overwritten and a run never fails at the end for want of a place to write.

Every output path is checked against every input (the same file, a hard link or a symbolic link
to it), against the other outputs, and for a place to write it: not an existing folder, a folder
that exists (or can be made) and is writable, and a name ending in .mp4 (`media.write_video`
writes H.264 in an MP4 container whatever the name says).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Union

from .errors import InputError

PathLike = Union[str, os.PathLike]

OUTPUT_SUFFIXES = (".mp4",)
"""Names an output may have: `media.write_video` writes MP4 only."""


def check_outputs(
    inputs: Mapping[str, Optional[PathLike]],
    outputs: Mapping[str, Optional[PathLike]],
    create_folders: bool = False,
) -> dict[str, Path]:
    """Refuse, with an InputError naming both paths, any output that would overwrite an input or
    another output, or that cannot be written. Keys are what the paths are ("input video", "mask",
    "output"); None values are skipped. Returns the outputs as Paths.

    `create_folders`: a missing folder is accepted when it can be made (what `write_video` does);
    by default it is refused, so a long run does not end in a mistyped folder.
    """
    given_inputs = {what: Path(p) for what, p in inputs.items() if p is not None}
    given_outputs = {what: Path(p) for what, p in outputs.items() if p is not None}
    for what, path in given_outputs.items():
        for source_what, source in given_inputs.items():
            relation = _same_file(path, source)
            if relation:
                raise InputError(f"the {what} {path} is the {source_what} {source} ({relation}); "
                                 f"choose another {what} path")
        _check_place(what, path, create_folders)
    seen: list[tuple[str, Path]] = []
    for what, path in given_outputs.items():
        for other_what, other in seen:
            relation = _same_file(path, other)
            if relation:
                raise InputError(f"the {other_what} {other} and the {what} {path} are {relation}; "
                                 f"give each its own path")
        seen.append((what, path))
    return given_outputs


def _same_file(a: Path, b: Path) -> Optional[str]:
    """How `a` and `b` name one file ("the same file", through a link), or None when they do not.

    Existing files are compared by device and inode (links followed); paths not written yet by
    where they resolve to.
    """
    try:
        if a.exists() and b.exists():
            if not os.path.samefile(a, b):
                return None
        elif a.resolve() != b.resolve():
            return None
    except (OSError, RuntimeError):  # unreadable or a symlink loop: not a file we would overwrite
        return None
    if os.path.abspath(a) == os.path.abspath(b):
        return "the same file"
    if os.path.realpath(a) == os.path.realpath(b):
        return "the same file through a symbolic link"
    return "a hard link to the same file"


def _check_place(what: str, path: Path, create_folders: bool) -> None:
    """Refuse an output that is a folder, sits in no writable folder, or is not named .mp4."""
    if path.is_dir():
        raise InputError(f"the {what} {path} is an existing folder; give a file path ending in .mp4 "
                         f"(e.g. {path / 'result.mp4'})")
    if path.exists() and not path.is_file():
        raise InputError(f"the {what} {path} exists and is not a regular file; choose another {what} path")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"the {what} {path} cannot be written: {existing} is a file, not a folder; "
                         f"choose another {what} path")
    if existing != folder and not create_folders:
        raise InputError(f"the folder {folder} of the {what} {path} does not exist; create it first "
                         f"or choose another {what} path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"the folder {existing} of the {what} {path} is not writable; "
                         f"choose another {what} path")
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"the {what} {path} must end in .mp4: results are written as H.264 MP4 "
                         f"(the only container written)")
