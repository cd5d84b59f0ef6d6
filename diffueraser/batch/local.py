"""Local mode: the batch in this process, one row after another, models loaded once.

A bar counts the videos; under it the current video's stages show as the single-video command
shows them (`TqdmProgress`). A failed row is printed above the bars and the batch goes on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ..progress import TqdmProgress
from .plan import Job, triage
from .report import FAILED, Report
from .work import Worker


def run_local(jobs: list[Job], report: Report, weights_dir: Optional[Union[str, Path]] = None,
              offline: bool = False, quiet: bool = False) -> None:
    """Run every job here, adding each outcome to `report` as it finishes."""
    from tqdm import tqdm

    worker = Worker(weights_dir, offline)
    with tqdm(total=len(jobs), desc="videos", unit="video", disable=quiet) as videos:
        for job in jobs:
            videos.set_postfix_str(job.row.name, refresh=True)
            outcome, current = triage(job)
            if outcome is None:
                with TqdmProgress(enabled=not quiet) as stages:
                    outcome = worker.run(job, current, progress=stages)
            report.add(outcome)
            if outcome.status == FAILED and not quiet:
                videos.write(f"failed: {outcome.name}: {outcome.message}")
            videos.update(1)
