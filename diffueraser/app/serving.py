"""The engine this server runs: the best rung of the fallback ladder its checkpoints allow.

Rungs, best first: DiffuEraser over the ProPainter prior (the released method), DiffuEraser over
the weight-free propagation prior (no ProPainter), the ProPainter prior alone (no denoiser), the
propagation prior alone (no checkpoint at all). The page says which rung it serves and why.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

from ..engine import Eraser, required_parts
from ..errors import CheckpointError
from ..settings import Settings

log = logging.getLogger(__name__)

RELEASED = Settings()


@dataclass(frozen=True)
class Rung:
    """One way the server can run, and how the page names it."""

    settings: Settings
    name: str


LADDER = (
    Rung(RELEASED, "DiffuEraser over the ProPainter prior (the released method)"),
    Rung(RELEASED.replace(prior="propagation"), "DiffuEraser over the weight-free propagation prior"),
    Rung(RELEASED.replace(diffusion=False), "the ProPainter prior alone (no diffusion)"),
    Rung(RELEASED.replace(diffusion=False, prior="propagation"), "the weight-free propagation prior alone"),
)
FALLBACK = LADDER[-1].settings
"""What runs with no checkpoint at all: the weight-free propagation prior alone."""


@dataclass
class EngineState:
    """The loaded engine, the rung it runs, and what is missing for the released method."""

    eraser: Eraser
    rung: Rung
    missing: list[str]
    download_error: Optional[str] = None
    """Why downloading the missing checkpoints failed, when it was tried."""
    offline_reason: Optional[str] = None
    """Why nothing was downloaded although downloads were allowed: the Hub could not be reached."""

    @property
    def loaded(self) -> Settings:
        """The settings the engine was loaded for: the page's defaults."""
        return self.rung.settings

    @property
    def full(self) -> bool:
        return not self.missing

    def unavailable(self, settings: Settings) -> list[str]:
        """Checkpoint parts these settings need that this server has not loaded."""
        loaded = set(required_parts(self.loaded))
        return [p for p in required_parts(settings) if p not in loaded]

    @classmethod
    def load(cls, weights_dir: Optional[str] = None, offline: bool = False,
             unreachable: Optional[Callable[[], Optional[str]]] = None) -> "EngineState":
        """The highest rung whose checkpoints can be found (downloaded once, unless offline).

        What is present is tried first; only when something is missing is the Hub asked, once
        and briefly (`unreachable`, by default `weights.fetch.hub_unreachable`): when it does not
        answer, the server starts at once with what it has and says why (`offline_reason`).
        Never raises for missing checkpoints: the page must start and say what is missing.
        """
        from ..weights.fetch import is_offline

        missing: list[str] = []
        download_error = offline_reason = None
        may_download = not is_offline(offline)
        for i, rung in enumerate(LADDER):
            try:
                # Only the first rung may download: the lower ones need a subset of its parts.
                eraser = cls._present_or_downloaded(rung, weights_dir, may_download and i == 0, unreachable)
            except _NoHub as e:
                offline_reason, error = e.reason, e.error
                missing = list(error.missing) or [str(error)]
                log.warning("%s: starting offline with the checkpoints present", offline_reason)
                continue
            except CheckpointError as e:
                if i == 0:
                    missing = list(e.missing) or [str(e)]
                    download_error = e.download_error
                    log.warning("checkpoints missing for the released method:\n%s", "\n".join(missing))
                continue
            if i > 0:
                log.warning("serving %s", rung.name)
            return cls(eraser, rung, missing, download_error, offline_reason)
        raise AssertionError("the last rung needs no checkpoint")  # pragma: no cover

    @staticmethod
    def _present_or_downloaded(rung: Rung, weights_dir: Optional[str], may_download: bool,
                               unreachable: Optional[Callable[[], Optional[str]]] = None) -> Eraser:
        from ..weights.fetch import hub_unreachable

        try:
            return Eraser.from_pretrained(settings=rung.settings, weights_dir=weights_dir, local_files_only=True)
        except CheckpointError as absent:
            if not may_download:
                raise
            reason = (unreachable or hub_unreachable)()
            if reason:
                raise _NoHub(reason, absent) from None
        return Eraser.from_pretrained(settings=rung.settings, weights_dir=weights_dir, local_files_only=False)


class _NoHub(Exception):
    """Checkpoints are missing and the Hub did not answer."""

    def __init__(self, reason: str, error: CheckpointError) -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


def unavailable_message(parts: list[str]) -> str:
    """Why a request's settings cannot run here, and what to change."""
    fixes = []
    if "propainter" in parts:
        fixes.append("pick the 'propagation' prior")
    if set(parts) - {"propainter"}:
        fixes.append("turn 'Diffusion' off")
    return (f"This server has no {', '.join(parts)} checkpoints, so these settings cannot run: "
            f"{' and '.join(fixes)}, or provide the checkpoints (see the note at the top of the page).")


def status_line(state: EngineState) -> str:
    """One line for the top of the page: the engine this server runs, and why when it is not the full one."""
    offline = " (started offline: the Hugging Face Hub cannot be reached)" if state.offline_reason else ""
    if state.full:
        return f"Running {state.rung.name}{offline}."
    return f"Running {state.rung.name}; the full model needs checkpoints{offline}: details"


def missing_note(state: EngineState) -> str:
    """Markdown for the page: which rung runs, what is missing and how to provide it."""
    if state.full:
        return ""
    items = "\n".join(f"- {line}" for line in state.missing)
    tried = f"Downloading them at start-up failed ({state.download_error}).\n\n" if state.download_error else ""
    if state.offline_reason:
        tried += (f"Nothing was downloaded: the server {state.offline_reason.replace('cannot', 'could not', 1)} "
                  "at start-up and started offline.\n\n")
    return (
        f"**Checkpoints missing: this server runs {state.rung.name}.** You can still remove objects; "
        "the released DiffuEraser quality needs the checkpoints below.\n\n"
        f"{items}\n\n{tried}"
        "To provide them: run with internet access once (they are downloaded to the Hugging Face cache), "
        "or put them in a `weights/` folder in the released layout (or point `DIFFUERASER_WEIGHTS` "
        "or `python app.py --weights DIR` at one), then restart the app."
    )
