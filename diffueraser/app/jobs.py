"""One erase request: checks, reading, the GPU part, writing what the page shows.

Only model work runs inside `@spaces.GPU` (`run_model`): the uploads are checked, decoded and
their masks read before a GPU is asked for, and the result, prior, before/after and mask videos
are encoded after it is handed back, so ZeroGPU time is not spent on ffmpeg. Every failure
reaches the page as a `gr.Error` carrying its user-facing text, also from inside the GPU call
(ZeroGPU passes only `gr.Error` through as it is).
"""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .. import media
from ..cost import count_work, estimate_seconds
from ..engine import EraseResult
from ..errors import InputError, UserError
from ..progress import SAVING, GradioProgress, Progress
from ..settings import Settings
from .controls import settings_from_page
from .serving import EngineState, unavailable_message
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


@dataclass
class Served:
    """What the handlers of this process serve (one engine per process)."""

    state: EngineState
    limits: Limits


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
        report = GradioProgress(progress, job.settings.diffusion) if progress is not None else None
        return served().state.eraser(job.clip, job.holes, settings=job.settings, progress=report)
    except Exception as e:
        raise page_error(e) from None


def page_error(error: BaseException) -> Exception:
    """The `gr.Error` the page shows for a failure: the user's message, never a traceback."""
    import gradio as gr
    import torch

    if isinstance(error, gr.Error):
        return error
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


def erase(video: Optional[str], mask: Optional[str], values: dict[str, Any], progress: Any = None):
    """Check, read, erase on the GPU, write. Returns the page's outputs:
    (result, prior or None, before/after, downloads, summary)."""
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
    result = run_model(Job(clip, holes, settings), progress)
    out_dir = Path(tempfile.mkdtemp(dir=output_root()))
    try:
        paths = save_outputs(out_dir, clip, result, GradioProgress(progress, settings.diffusion)
                             if progress is not None else None)
    except Exception as e:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise page_error(e) from None
    frames, height, width = result.frames.shape[:3]
    processed = f" (the first {clip.duration:.1f} s of {info.duration:.1f} s)" if trimmed else ""
    summary = (f"{frames} frames at {width}×{height}, {result.fps:g} fps{processed} · seed {result.seed} · "
               f"{describe(settings)} · {time.perf_counter() - start:.1f} s")
    downloads = [p for p in (paths["result"], paths["prior"], paths["comparison"], paths["mask"]) if p]
    return paths["result"], paths["prior"], paths["comparison"], downloads, summary


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

