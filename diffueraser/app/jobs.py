"""One erase request: checks, reading, the GPU part, writing what the page shows.

Only model work runs inside `@spaces.GPU` (`run_model`): the uploads are checked, decoded and
their masks read before a GPU is asked for, and the result, prior, before/after and mask videos
are encoded after it is handed back, so ZeroGPU time is not spent on ffmpeg. Every failure
reaches the page as a `gr.Error` carrying its user-facing text, also from inside the GPU call
(ZeroGPU passes only `gr.Error` through as it is).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from .. import media
from ..cost import count_work, estimate_app_seconds, estimate_seconds
from ..engine import EraseResult
from ..errors import InputError, UserError
from ..progress import SAVING, GradioProgress, Progress
from ..settings import Settings
from .controls import settings_from_page
from .serving import EngineState, unavailable_message
from .sources import MaskSource, make_chosen_mask
from .uploads import Limits, check_video, trimmed_note

log = logging.getLogger(__name__)

try:  # ZeroGPU patches CUDA when `spaces` is imported (app.py imports it before torch)
    import spaces

    gpu_task = spaces.GPU
except ImportError:  # a machine without the `spaces` package: plain CUDA or CPU

    def gpu_task(duration: Any = None) -> Callable[[Callable], Callable]:
        return lambda task: task


COMPARE_MAX_WIDTH = 1280  # the before/after video is scaled down to this width
COMPARE_GAP = 4  # pixels of black between "before" and "after"
GPU_BASE_S = 20.0  # moving the models onto the GPU and warming up
GPU_MARGIN = 1.5  # the estimate is a mean; ZeroGPU stops a job at its duration
GPU_MIN_S, GPU_MAX_S = 30, 300
LORA_SWAP_S = 15.0
"""Fusing another step count's PCM LoRA inside the GPU call: reading it and unet_main's patched
base tensors back from disk (an estimate: each ZeroGPU worker starts from the loaded LoRA)."""
OUT_OF_MEMORY = "Out of memory: lower 'Maximum size' or 'Maximum seconds' and try again."


STOPPED = "Stopped. The next run can start."


class Stopped(Exception):
    """The user pressed Stop: raised from the next progress report of the running job."""


@dataclass
class Served:
    """What the handlers of this process serve (one engine per process)."""

    state: EngineState
    limits: Limits

    def __post_init__(self) -> None:
        # Held while a job's model part and saving run, so that a stopped job's thread has left
        # before the next job starts (Gradio frees its queue slot at once, the thread unwinds at
        # its next progress report).
        self.slots = threading.BoundedSemaphore(max(1, self.limits.gpu_jobs))


SERVED: Optional[Served] = None


def served() -> Served:
    import gradio as gr

    if SERVED is None:
        raise gr.Error("The engine is not loaded yet; reload the page in a minute.")
    return SERVED


@dataclass(frozen=True)
class Job:
    """What the GPU part of one erase needs, decoded already (ZeroGPU pickles it to its worker)."""

    clip: media.Video
    holes: np.ndarray
    settings: Settings
    session: str = ""
    """The page session that asked for it: its Stop button stops it (empty: an API call)."""


STOPS: dict[str, threading.Event] = {}
"""The running job's stop flag, per page session."""
_STOPS_LOCK = threading.Lock()


def stop(session: str) -> None:
    """Ask the session's running job to stop at its next progress report."""
    with _STOPS_LOCK:
        flag = STOPS.get(session)
    if flag is not None:
        flag.set()


def _watch(session: str) -> threading.Event:
    flag = threading.Event()
    if session:
        with _STOPS_LOCK:
            STOPS[session] = flag
    return flag


def _unwatch(session: str, flag: threading.Event) -> None:
    with _STOPS_LOCK:
        if STOPS.get(session) is flag:
            del STOPS[session]


_SESSION: contextvars.ContextVar[str] = contextvars.ContextVar("page_session", default="")
"""The page session a handler works for, so that work it starts deep down (tracking, text
detection inside a source's `make_mask`) can be stopped by that session's Stop."""


@contextlib.contextmanager
def watching(session: str) -> Iterator[threading.Event]:
    """The session's Stop flag for the work inside the block (which `current_session` names)."""
    flag = _watch(session)
    token = _SESSION.set(session)
    try:
        yield flag
    finally:
        _SESSION.reset(token)
        _unwatch(session, flag)


def current_session() -> str:
    """The page session of the work running here ("" for an API call)."""
    return _SESSION.get()


def raise_if_stopped(session: str) -> None:
    """`Stopped` when `session`'s Stop was pressed since its work started."""
    flag = STOPS.get(session) if session else None
    if flag is not None and flag.is_set():
        raise Stopped(STOPPED)


class Reporter:
    """The page's progress: one bar over every stage, its label ending in the time left; raises
    `Stopped` when the session's Stop was pressed.

    The time left is the cost model's estimate until a tenth of the job is done, then what the
    elapsed time and the bar's fraction imply.
    """

    def __init__(self, report: Callable[..., Any], diffusion: bool, expected_s: float = 0.0, session: str = "",
                 start: Optional[float] = None) -> None:
        self.report, self.expected_s, self.session = report, expected_s, session
        self.start = time.perf_counter() if start is None else start
        self.bar = GradioProgress(self._labelled, diffusion)

    def __call__(self, progress: Progress) -> None:
        raise_if_stopped(self.session)
        self.bar(progress)

    def _labelled(self, fraction: float, desc: str = "") -> None:
        left = remaining_seconds(time.perf_counter() - self.start, fraction, self.expected_s)
        joint = " · " if ":" in desc else ": "
        self.report(fraction, desc=f"{desc}{joint}about {format_seconds(left)} left")


def remaining_seconds(elapsed: float, fraction: float, expected: float) -> float:
    """Seconds left: from the estimate early on, then from the rate so far."""
    if fraction < 0.1:
        return max(expected - elapsed, 0.0) if expected > 0 else float("nan")
    return max(elapsed * (1 - fraction) / fraction, 0.0)


def format_seconds(seconds: float) -> str:
    """"12 s", "3 min", "1 h 5 min" (rounded for reading, not timing); "?" when unknown."""
    if seconds != seconds:  # NaN
        return "? s"
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def gpu_seconds(job: Job, progress: Any = None) -> int:
    """ZeroGPU duration to reserve: the cost model's CUDA estimate with a margin, within bounds.

    Covers the prior, pre-inference, DDIM inversion, the VAE passes and the denoiser windows, and
    the PCM LoRA swap when the request's step count is not the loaded one.
    """
    clip = job.clip
    work = count_work(clip.num_frames, clip.height, clip.width, job.settings)
    seconds = GPU_BASE_S + GPU_MARGIN * estimate_seconds(work, job.settings, "cuda")
    diffuser = SERVED.state.eraser.diffuser if SERVED is not None else None
    if job.settings.diffusion and diffuser is not None and diffuser.lora_steps != job.settings.steps:
        seconds += LORA_SWAP_S
    return int(min(GPU_MAX_S, max(GPU_MIN_S, seconds)))


@gpu_task(duration=gpu_seconds)
def run_model(job: Job, progress: Any = None) -> EraseResult:
    """The engine on decoded frames and masks; any failure leaves as a `gr.Error` with its message."""
    try:
        report = (Reporter(progress, job.settings.diffusion, expected_seconds(job), job.session)
                  if progress is not None else None)
        return served().state.eraser(job.clip, job.holes, settings=job.settings, progress=report)
    except Exception as e:
        raise page_error(e) from None


def expected_seconds(job: Job) -> float:
    """The cost model's time for the job on this server's device, saving the page's videos included."""
    clip = job.clip
    return estimate_app_seconds(clip.num_frames, clip.height, clip.width, job.settings, served_device())


def served_device() -> str:
    """"cuda" or "cpu": the kind of device the served engine runs on."""
    from ..engine import resolve_device

    return resolve_device(served().state.loaded)[0].type if SERVED is not None else "cpu"


def page_error(error: BaseException) -> Exception:
    """The `gr.Error` the page shows for a failure: the user's message, never a traceback."""
    import gradio as gr
    import torch

    if isinstance(error, gr.Error):
        return error
    if isinstance(error, Stopped):
        return gr.Error(STOPPED, print_exception=False)
    if isinstance(error, UserError):
        return gr.Error(hide_paths(str(error)), print_exception=False)
    if isinstance(error, torch.OutOfMemoryError):
        return gr.Error(OUT_OF_MEMORY, print_exception=False)
    log.error("erase failed", exc_info=error)
    return gr.Error(f"Something went wrong while erasing ({type(error).__name__}). "
                    "Try other settings; if it persists, report it.", print_exception=False)


_ABSOLUTE_PATH = re.compile(r"(?<![\w./\\~-])(?:/(?!/)|[A-Za-z]:\\)[^\s'\"`,;()\[\]{}<>|]+")
"""An absolute path in a message (POSIX or Windows, ffmpeg's "file:/..." included), not a URL's
path ("https://...") nor a relative one."""


def hide_paths(text: str) -> str:
    """`text` with each absolute path replaced by its file name: messages about uploads (held in the
    server's temporary folders) or checkpoints must not show where the server keeps its files."""

    def file_name(found: re.Match) -> str:
        path = found.group(0)
        kept = path.rstrip(".:")  # a full stop or colon after the path is the sentence's
        name = re.split(r"[\\/]", kept.rstrip("/\\"))[-1]
        return (name or kept) + path[len(kept):]

    return _ABSOLUTE_PATH.sub(file_name, text)


def erase_api(video: Optional[str], mask: Optional[str], prompts: Optional[str], text_region: Optional[str],
              values: dict[str, Any], progress: Any = None):
    """`/erase`: the mask is the mask file, the objects `prompts` (JSON) name tracked through the
    video, the text detected in `text_region`, or the union of those given. The masks made here
    are removed after the job."""
    owned: list[str] = []
    try:
        try:
            mask = _api_mask(video, mask, prompts, text_region, owned)
        except Exception as e:
            raise page_error(e) from None
        return erase(video, mask, values, progress)
    finally:
        for path in owned:
            Path(path).unlink(missing_ok=True)


def _api_mask(video: Optional[str], mask: Optional[str], prompts: Optional[str], text_region: Optional[str],
              owned: list[str]) -> Optional[str]:
    if (prompts or "").strip():
        from ..select.combine import union_mask_files
        from .selecting import run_tracking
        from .sources import scratch_file
        from .texting import max_seconds

        tracked, _ = run_tracking(video, prompts)
        owned.append(tracked)
        if mask:
            tracked = str(union_mask_files([tracked, mask], video, scratch_file(".mp4"), max_seconds=max_seconds()))
            owned.append(tracked)
        mask = tracked
    if (text_region or "").strip():
        from .texting import mask_with_text

        joined = mask_with_text(video, mask, text_region)
        if joined != mask:
            owned.append(joined)
        mask = joined
    return mask


def erase(video: Optional[str], mask: Optional[str], values: dict[str, Any], progress: Any = None,
          session: str = "", flag: Optional[threading.Event] = None):
    """Check, read, erase on the GPU, write. Returns the page's outputs:
    (result, prior or None, before/after, downloads, summary).

    `session`'s Stop stops it (`flag`: its stop flag when the caller registered it already)."""
    if flag is not None:
        return _erase(video, mask, values, progress, session)
    with watching(session):
        return _erase(video, mask, values, progress, session)


def _erase(video: Optional[str], mask: Optional[str], values: dict[str, Any], progress: Any, session: str):
    import gradio as gr

    start = time.perf_counter()
    here = served()
    try:
        info = check_video(video, mask, here.limits)
        settings = settings_from_page(values, here.limits, here.state.loaded)
        absent = here.state.unavailable(settings)
        if absent:
            raise InputError(unavailable_message(absent))
        trimmed = trimmed_note(info, settings.max_seconds, here.limits)
        if trimmed:
            gr.Warning(trimmed)
        clip = media.read_video(video, max_seconds=settings.max_seconds)
        holes = media.read_masks(mask, clip)
    except Exception as e:
        raise page_error(e) from None
    job = Job(clip, holes, settings, session)
    out_dir: Optional[Path] = None
    try:
        with here.slots:  # a stopped job's thread leaves before the next one starts
            raise_if_stopped(session)
            result = run_model(job, progress)
            out_dir = Path(tempfile.mkdtemp(dir=output_root()))
            report = (Reporter(progress, settings.diffusion, expected_seconds(job), session, start)
                      if progress is not None else None)
            paths = save_outputs(out_dir, clip, result, report)
    except Exception as e:
        if out_dir is not None:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise page_error(e) from None
    frames, height, width = result.frames.shape[:3]
    processed = f" (the first {clip.duration:.1f} s of {info.duration:.1f} s)" if trimmed else ""
    summary = (f"{frames} frames at {width}×{height}, {result.fps:g} fps{processed} · seed {result.seed} · "
               f"{describe(settings)} · {time.perf_counter() - start:.1f} s")
    downloads = [p for p in (paths["result"], paths["prior"], paths["comparison"], paths["mask"]) if p]
    return paths["result"], paths["prior"], paths["comparison"], downloads, summary


def erase_from_source(sources: list[MaskSource], label: str, video: Optional[str], source_values: list[Any],
                      values: dict[str, Any], progress: Any = None, session: str = ""):
    """The page's Erase: the chosen source makes the mask, then `erase`; a mask file the source
    wrote for this request is removed afterwards (also when the job failed or was stopped)."""
    mask, owned = None, False
    # From the start: a Stop while the mask is made (tracking, text detection) stops the job there.
    with watching(session) as flag:
        try:
            if not video:
                raise InputError("Upload a video first, or click an example.")
            mask, owned = make_chosen_mask(sources, label, video, source_values)
            raise_if_stopped(session)
            return erase(video, mask, values, progress, session, flag)
        except Exception as e:  # a gr.Error (from `erase`) passes through as it is
            raise page_error(e) from None
        finally:
            if owned and mask:
                remove_scratch(mask)


def remove_scratch(path: str) -> None:
    """Remove a mask file a source wrote, with its folder when that is one of the page's own."""
    file = Path(path)
    try:
        if file.parent.name.startswith("mask_") and file.parent.parent == output_root():
            shutil.rmtree(file.parent, ignore_errors=True)
        else:
            file.unlink(missing_ok=True)
    except OSError as e:  # not worth failing a finished request over
        log.warning("could not remove %s: %s", file.name, e)


def output_root() -> Path:
    """Where requests write: inside Gradio's cache, whose `delete_cache` removes what it served."""
    import gradio as gr

    root = Path(gr.utils.get_upload_folder()) / "diffueraser"
    root.mkdir(parents=True, exist_ok=True)
    return root


def save_outputs(out: Path, clip: media.Video, result: EraseResult,
                 progress: Optional[Callable[[Progress], None]] = None) -> dict[str, Optional[str]]:
    """Result (audio kept), prior, before/after and mask videos in `out`."""
    report = progress or (lambda p: None)
    report(Progress(SAVING, 0, 4, "result"))
    paths: dict[str, Optional[str]] = {"result": str(result.save(out / "result.mp4", audio_from=clip.source))}
    report(Progress(SAVING, 1, 4, "prior"))
    paths["prior"] = str(result.save_prior(out / "prior.mp4")) if result.prior is not None else None
    report(Progress(SAVING, 2, 4, "before/after"))
    paths["comparison"] = str(save_comparison(out / "before_after.mp4", clip, result))
    report(Progress(SAVING, 3, 4, "mask"))
    masks = np.repeat(result.masks[..., None].astype(np.uint8) * 255, 3, axis=-1)
    paths["mask"] = str(media.write_video(out / "mask.mp4", masks, result.fps))
    report(Progress(SAVING, 4, 4, "done"))
    return paths


def save_comparison(path: Path, clip: media.Video, result: EraseResult) -> Path:
    """Input and result side by side, scaled to at most COMPARE_MAX_WIDTH wide, audio kept."""
    import cv2

    before, after = clip.frames[: len(result.frames)], result.frames
    count, height = after.shape[:2]
    gap = np.zeros((count, height, COMPARE_GAP, 3), np.uint8)
    both = np.concatenate([before, gap, after], axis=2)
    scale = COMPARE_MAX_WIDTH / both.shape[2]
    if scale < 1:
        size = (int(both.shape[2] * scale), int(height * scale))
        both = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in both])
    return media.write_video(path, both, result.fps, audio_from=clip.source)


def describe(settings: Settings) -> str:
    """Which engine ran, in words, for the summary under each result."""
    prior = {"propainter": "the ProPainter prior", "propagation": "the weight-free propagation prior",
             "none": "no prior"}[settings.prior]
    if not settings.diffusion:
        return f"{prior} alone, no diffusion"
    return f"DiffuEraser, {settings.steps} steps, over {prior} ({settings.prior})"

