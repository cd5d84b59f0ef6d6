"""Each row's outcome, and the JSON Lines report the driver writes as rows finish.

One line per row: `{"index", "name", "status", "seconds", "output", "video", "message", "frames",
"seed", "attempts", "worker"}`. `status` is "done" (erased now), "skipped" (its output and record
already matched) or "failed"; `message` is the user-facing reason of a failure (an `InputError`'s
text, or the type and first line of an unexpected error). Lines come in the order rows finish
(`index` is the row's place in the batch).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Optional

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass
class Outcome:
    """What became of one row."""

    index: int
    name: str
    status: str
    output: str
    video: str
    seconds: float = 0.0
    message: Optional[str] = None
    frames: Optional[int] = None
    seed: Optional[int] = None
    attempts: int = 0
    """Times the row was started (more than 1 after a lost worker)."""
    worker: Optional[str] = None
    """Which worker ran it (host:pid), when one did."""


def failure_message(error: BaseException) -> str:
    """The text a report shows for an error: a UserError's message as is; else type and first line."""
    from ..errors import UserError

    if isinstance(error, UserError):
        return str(error)
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class Report:
    """Writes outcomes to a JSON Lines file as they come (flushed per line) and counts them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self.outcomes: list[Outcome] = []
        self._file: Optional[IO[str]] = None

    def __enter__(self) -> "Report":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        self.outcomes.append(outcome)
        if self._file is not None:
            self._file.write(json.dumps(asdict(outcome)) + "\n")
            self._file.flush()

    @property
    def all_succeeded(self) -> bool:
        return self.counts[FAILED] == 0

    def summary(self) -> str:
        """One line: how many rows were done, skipped and failed, and where the report is."""
        return (f"{self.counts[DONE]} done, {self.counts[SKIPPED]} skipped (already done), "
                f"{self.counts[FAILED]} failed; report: {self.path}")
