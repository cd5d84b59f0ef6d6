"""One progress type for the whole method, and the adapters that show it.

The engine and every stage it calls report `Progress(stage, done, total, detail)`: units of work
done out of the stage's total (frames through the VAE or the denoiser, or permille where a
stage's steps differ in cost). A stage's reports never go back. Callers pick an adapter: `silent` (the
default everywhere), `TqdmProgress` (one bar per stage, for the command line) or `GradioProgress`
(one bar for the whole job, for the page).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO

READING = "reading"
MASKS = "masks"
PRIOR = "prior"
DIFFUSION = "diffusion"
DECODING = "decoding"
WRITING = "writing"
SAVING = "saving"
STAGES = (READING, MASKS, PRIOR, DIFFUSION, DECODING, WRITING, SAVING)
"""Every stage name, in data-flow order; "saving" is the app's (encoding the videos it shows)."""

PERMILLE = 1000

STAGE_SPANS = {
    True: {READING: (0.0, 0.05), MASKS: (0.05, 0.08), PRIOR: (0.08, 0.35), DIFFUSION: (0.35, 0.8),
           DECODING: (0.8, 0.85), WRITING: (0.85, 0.9), SAVING: (0.9, 1.0)},
    False: {READING: (0.0, 0.1), MASKS: (0.1, 0.15), PRIOR: (0.15, 0.8), WRITING: (0.8, 0.85),
            SAVING: (0.85, 1.0)},
}
"""Part of one whole-job bar each stage fills, with diffusion (True) and without (False)."""


@dataclass(frozen=True)
class Progress:
    """`done` of the stage's `total` units are finished; `detail` says where, e.g. "step 1/2, clip 3 of 5"."""

    stage: str
    done: int
    total: int
    detail: str = ""

    @property
    def fraction(self) -> float:
        """Share of the stage done, in [0, 1] (a stage with nothing to do is done)."""
        return min(self.done / self.total, 1.0) if self.total > 0 else 1.0

    @classmethod
    def permille(cls, stage: str, fraction: float, detail: str = "") -> "Progress":
        """A report in thousandths, for stages whose units differ in cost."""
        return cls(stage, round(min(max(fraction, 0.0), 1.0) * PERMILLE), PERMILLE, detail)

    def describe(self) -> str:
        """A bar's label: "stage: detail", or the stage alone."""
        return f"{self.stage}: {self.detail}" if self.detail else self.stage


ProgressFn = Callable[[Progress], None]


def silent(progress: Progress) -> None:
    """Reports nobody listens to."""


class TqdmProgress:
    """One tqdm bar per stage on `file` (default stderr): total = the stage's units, postfix = detail.

    A stage that starts over (done going back) gets a new bar. Close the adapter (or use it as a
    context manager) so the last bar is finished cleanly.
    """

    def __init__(self, file: Optional[TextIO] = None, enabled: bool = True) -> None:
        self.file, self.enabled = file, enabled
        self.stage: Optional[str] = None
        self.bar: Any = None

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if self.bar is None or progress.stage != self.stage or progress.done < self.bar.n:
            from tqdm import tqdm

            self.close()
            self.stage = progress.stage
            self.bar = tqdm(total=progress.total, desc=progress.stage, leave=True,
                            file=self.file if self.file is not None else sys.stderr)
        if self.bar.total != progress.total:
            self.bar.total = progress.total
        self.bar.n = progress.done
        self.bar.set_postfix_str(progress.detail, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar, self.stage = None, None

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class GradioProgress:
    """Maps every stage onto one bar through `STAGE_SPANS`; the bar never goes back.

    `report` is a `gr.Progress` (or any `report(fraction, desc=...)`); `diffusion` picks the spans.
    Reports of stages outside the spans only change the label.
    """

    def __init__(self, report: Callable[..., Any], diffusion: bool) -> None:
        self.report, self.spans, self.fraction = report, STAGE_SPANS[bool(diffusion)], 0.0

    def __call__(self, progress: Progress) -> None:
        span = self.spans.get(progress.stage)
        if span is not None:
            f = progress.fraction
            self.fraction = max(self.fraction, span[0] * (1 - f) + span[1] * f)
        self.report(self.fraction, desc=progress.describe())
