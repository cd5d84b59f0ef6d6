"""Everything checked about a batch before any video is touched, and what is left to do.

Before work starts: each row's settings (the command's with the row's overrides), each output
against every input of the whole batch (no output may overwrite any row's video or mask, by path,
symbolic or hard link), two rows writing one output, and a place to write each output. A rerun
then skips the rows whose record matches (`record.py`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError
from ..outputs import check_outputs
from ..settings import Settings
from . import record
from .report import FAILED, SKIPPED, Outcome, failure_message
from .rows import Row


@dataclass
class Job:
    """A row with its settings in force, numbered in batch order."""

    index: int
    row: Row
    settings: Settings


def plan(rows: list[Row], base: Settings, report: Optional[Path] = None) -> list[Job]:
    """Jobs for the rows, or an InputError (the whole batch is refused) for a bad setting or output."""
    jobs = [Job(i, row, row.settings(base)) for i, row in enumerate(rows)]
    check_batch_outputs(rows, report)
    return jobs


def check_batch_outputs(rows: list[Row], report: Optional[Path] = None) -> None:
    """Refuse outputs that collide with each other or with any input, or cannot be written."""
    inputs: dict[Any, tuple[str, Row, Path]] = {}
    for row in rows:
        for what, path in row.inputs().items():
            if path is not None:
                for key in _keys(path):
                    inputs.setdefault(key, (what, row, path))
    outputs: dict[Any, tuple[Row, Path]] = {}
    for row in rows:
        for key in _keys(row.output):
            if key in inputs:
                what, owner, path = inputs[key]
                raise InputError(f"the output {row.output} of {row.name} is the {what} {path} of {owner.name}; "
                                 f"write the outputs to another folder")
            if key in outputs and outputs[key][0] is not row:
                other = outputs[key][0]
                raise InputError(f"{other.name} and {row.name} would both write {row.output}; "
                                 f"give each row its own output (a manifest's 'output' column)")
            outputs[key] = (row, row.output)
        if row.problem is None:  # a row that cannot run has no inputs to check
            check_outputs({k: v for k, v in row.inputs().items() if v is not None and v.exists()},
                          {"output": row.output}, create_folders=True)
    if report is not None:
        for key in _keys(report):
            if key in inputs:
                what, owner, path = inputs[key]
                raise InputError(f"the report {report} is the {what} {path} of {owner.name}; choose another --report")
            if key in outputs:
                raise InputError(f"the report {report} is the output of {outputs[key][0].name}; choose another --report")


def _keys(path: Path) -> list[Any]:
    """Ways two names can be one file: the resolved path, and (device, inode) for an existing file."""
    keys: list[Any] = [os.path.realpath(path)]
    try:
        stat = path.stat()
        keys.append((stat.st_dev, stat.st_ino))
    except OSError:
        pass
    return keys


def pending(job: Job) -> Optional[dict[str, Any]]:
    """The job's fingerprint when it has work to do; None when its output and record match.

    Raises InputError when an input cannot be read (the job fails, the batch goes on).
    """
    row = job.row
    previous = record.load_record(row.output)
    current = record.fingerprint(row.video, row.mask, row.prompts, row.text, job.settings, previous)
    return None if record.is_done(row.output, previous, current) else current


def triage(job: Job) -> tuple[Optional[Outcome], Optional[dict[str, Any]]]:
    """(outcome, None) for a row that needs no worker: failed before starting, or already done;
    (None, fingerprint) for a row to run."""
    row = job.row
    outcome = Outcome(job.index, row.name, FAILED, str(row.output), str(row.video))
    if row.problem is not None:
        outcome.message = row.problem
        return outcome, None
    try:
        current = pending(job)
    except (InputError, OSError) as error:  # an input gone or unreadable: this row fails, the batch goes on
        outcome.message = failure_message(error)
        return outcome, None
    if current is None:
        outcome.status = SKIPPED
        return outcome, None
    return None, current
