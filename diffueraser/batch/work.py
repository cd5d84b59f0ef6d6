"""One row of a batch: make the mask when asked, erase, write the output and its record.

`Worker` holds the loaded models across rows. Local mode has one; on Ray each actor is one (the
actor class is `Worker` itself). A row's failure is caught and returned as its outcome, so the
batch goes on.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Union

from ..progress import ProgressFn, silent
from ..settings import Settings
from . import record
from .plan import Job
from .report import DONE, FAILED, Outcome, failure_message


def erase_to_file(eraser: Any, video: Path, mask: Path, output: Path, settings: Settings,
                  progress: ProgressFn) -> dict[str, Any]:
    """The batch's one call into the engine: erase `video` and write `output` (streaming, atomically,
    audio kept)."""
    summary = eraser.erase_file(video, mask, output, settings=settings, progress=progress)
    return {"frames": int(summary.num_frames), "seed": int(summary.seed)}


class Worker:
    """Runs rows one at a time with models loaded once (on the first row that needs them)."""

    def __init__(self, weights_dir: Optional[Union[str, Path]] = None, offline: bool = False) -> None:
        self.weights_dir, self.offline = weights_dir, offline
        self.eraser: Any = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def ready(self) -> str:
        """The worker's name; answers once the worker is up (Ray: after a restart too)."""
        return self.name

    def run(self, job: Job, current: dict[str, Any], progress: Optional[ProgressFn] = None,
            attempt: int = 1) -> Outcome:
        """Erase one row; `current` is its fingerprint (`plan.pending`), recorded beside the output."""
        row, settings = job.row, job.settings
        outcome = Outcome(job.index, row.name, FAILED, str(row.output), str(row.video), attempts=attempt,
                          worker=self.name)
        start = time.monotonic()
        try:
            record.forget(row.output)
            record.clear_leftovers(row.output)
            with tempfile.TemporaryDirectory(prefix="diffueraser-batch-") as scratch:
                mask = self._mask(job, Path(scratch), progress or silent)
                made = erase_to_file(self._eraser(settings), row.video, mask, row.output, settings, progress or silent)
            record.write_record(row.output, current, {**made, "seconds": round(time.monotonic() - start, 3)})
            outcome.status, outcome.frames, outcome.seed = DONE, made["frames"], made["seed"]
        except Exception as error:  # noqa: BLE001 - one row's failure is reported, the batch goes on
            outcome.message = failure_message(error)
        outcome.seconds = round(time.monotonic() - start, 3)
        return outcome

    def _eraser(self, settings: Settings) -> Any:
        """The loaded eraser; what a later row's settings need more is loaded by the eraser's call."""
        if self.eraser is None:
            from ..engine import Eraser

            self.eraser = Eraser.from_pretrained(settings, weights_dir=self.weights_dir,
                                                 local_files_only=self.offline)
        return self.eraser

    def _mask(self, job: Job, scratch: Path, progress: ProgressFn) -> Path:
        """The row's mask file: as given, or made from its prompts (tracker) or text region (detector)."""
        row, settings = job.row, job.settings
        if row.mask is not None:
            return row.mask
        made = scratch / "mask.mp4"
        if row.prompts is not None:
            from ..select.prompts import parse_prompts
            from ..select.track import track_to_file

            track_to_file(row.video, parse_prompts(row.prompts), made, weights_dir=self.weights_dir,
                          local_files_only=self.offline, max_seconds=settings.max_seconds, progress=progress)
        else:
            from ..select.text import text_mask_to_file

            text_mask_to_file(row.video, made, region=row.text, max_seconds=settings.max_seconds, progress=progress)
        return made
