"""End to end: read → working size → masks → prior → diffusion → compose → result.

`Eraser` holds the loaded models (built once, reused across calls); a call turns a video and a
mask into an `EraseResult`. Nothing here knows where checkpoints live (`weights/` does) or how
a model computes (`models/`, `prior/`, `diffusion/`).
"""
from __future__ import annotations

import copy
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

import numpy as np
import torch

from . import masks as mask_ops
from . import media
from .errors import InputError
from .outputs import check_outputs
from .prior import Prior
from .progress import MASKS, READING, SAVING, WRITING, Progress, ProgressFn, silent
from .settings import Settings

if TYPE_CHECKING:
    from .diffusion.diffuser import Diffuser
    from .prior.propainter import ProPainterPrior

VideoInput = Union[str, Path, "media.Video"]
MaskInput = Union[str, Path, np.ndarray]

SEED_RANGE = 2**31


def required_parts(settings: Settings) -> list[str]:
    """Checkpoint parts (names of `weights.PARTS`) that running with these settings needs."""
    parts = ["propainter"] if settings.prior == "propainter" else []
    if settings.diffusion:
        parts += ["denoiser", "text", "vae", "pcm"]
    return parts


def resolve_device(settings: Settings) -> tuple[torch.device, torch.dtype]:
    """Device and compute dtype for the settings ('auto': CUDA in float16 when available)."""
    name = settings.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {settings.device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise InputError(f"device {settings.device!r} was asked for but this machine has {count} GPU"
                         f"{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1}); use one of those or 'auto'")
    if settings.dtype == "auto":
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, settings.dtype)
    if device.type == "cpu" and dtype == torch.float16:
        raise InputError("float16 is not supported on the CPU; use float32 or bfloat16")
    return device, dtype


@dataclass
class EraseResult:
    """Output of one call; frames are at the input video's size."""

    frames: np.ndarray
    """uint8 [T, H, W, 3]: the video with the masked region filled."""
    prior: Optional[np.ndarray]
    """uint8 [T, H, W, 3]: the prior's completion (None with prior 'none')."""
    masks: np.ndarray
    """bool [T, H, W]: the dilated mask that was filled."""
    fps: float
    seed: int
    source: Optional[Path] = None
    """The input video file, whose audio track `save` carries over."""
    source_duration: Optional[float] = None
    """Seconds of the whole input video as its file states them (None: unknown). More than
    `duration` when `max_seconds` trimmed the video."""

    @property
    def duration(self) -> float:
        """Seconds of video processed (and written by `save`)."""
        return len(self.frames) / self.fps

    def save(self, path: Union[str, Path], audio_from: Optional[Union[str, Path]] = None) -> Path:
        """Write the result as H.264 mp4, with the audio of `audio_from` (default: the input).

        Refused (InputError) when `path` is the input video or `audio_from`, a folder, or not .mp4.
        """
        audio = audio_from if audio_from is not None else self.source
        check_outputs({"input video": self.source, "audio source": audio}, {"output": path}, create_folders=True)
        return media.write_video(path, self.frames, self.fps, audio_from=audio, protect=self._inputs())

    def save_prior(self, path: Union[str, Path]) -> Path:
        """Write the prior's completion as H.264 mp4 (no audio); refused like `save`."""
        if self.prior is None:
            raise InputError("this result has no prior video (prior 'none')")
        check_outputs({"input video": self.source}, {"prior output": path}, create_folders=True)
        return media.write_video(path, self.prior, self.fps, protect=self._inputs())

    def _inputs(self) -> list[Path]:
        return [] if self.source is None else [self.source]


@contextmanager
def _stage(progress: ProgressFn, stage: str) -> Iterator[None]:
    """Reports a one-unit stage of the engine's own (reading, masks, writing) as it starts and ends."""
    progress(Progress(stage, 0, 1))
    yield
    progress(Progress(stage, 1, 1))


class Eraser:
    """The loaded method. Build once with `from_pretrained`, call once per video."""

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        propainter: Optional["ProPainterPrior"] = None,
        diffuser: Optional["Diffuser"] = None,
        weights_dir: Optional[Union[str, Path]] = None,
        local_files_only: bool = False,
    ) -> None:
        self.settings = settings or Settings()
        self.propainter = propainter
        self.diffuser = diffuser
        self.weights_dir = weights_dir
        self.local_files_only = local_files_only

    @classmethod
    def from_pretrained(
        cls,
        settings: Optional[Settings] = None,
        weights_dir: Optional[Union[str, Path]] = None,
        local_files_only: bool = False,
    ) -> "Eraser":
        """Resolve and load every checkpoint the settings need (CheckpointError names what is missing)."""
        _check_settings(settings)
        eraser = cls(settings, weights_dir=weights_dir, local_files_only=local_files_only)
        eraser.load(eraser.settings)
        return eraser

    # ---- loading ------------------------------------------------------------------------

    def load(self, settings: Settings) -> None:
        """Load what `settings` needs and is not loaded yet (one CheckpointError names all that is missing).

        The diffuser follows each call's step count itself, swapping its PCM LoRA in place.
        """
        from .weights import load_diffuser, load_propainter, resolve

        needed = [p for p in required_parts(settings) if not self._has(p)]
        if not needed:
            return
        device, dtype = resolve_device(settings)
        paths = resolve(needed, self.weights_dir, self.local_files_only, steps=settings.steps)
        if "propainter" in needed:
            self.propainter = load_propainter(paths, device, dtype)
        if "denoiser" in needed:
            self.diffuser = load_diffuser(paths, device, dtype, self.weights_dir, self.local_files_only)

    def _has(self, part: str) -> bool:
        if part == "propainter":
            return self.propainter is not None
        return self.diffuser is not None  # denoiser, text, vae, and pcm: the diffuser swaps LoRAs itself

    def make_prior(self, settings: Settings) -> Prior:
        """The prior the settings ask for, configured by them."""
        if settings.prior == "propagation":
            from .prior.propagation import PropagationPrior

            return PropagationPrior(mask_dilation=settings.mask_dilation)
        # The loaded networks are shared; only the per-call knobs differ.
        prior = copy.copy(self.propainter)
        prior.prior_scale, prior.raft_iters = settings.prior_scale, settings.raft_iters
        prior.mask_dilation = settings.mask_dilation
        return prior

    # ---- one video ----------------------------------------------------------------------

    def __call__(
        self,
        video: VideoInput,
        mask: MaskInput,
        settings: Optional[Settings] = None,
        progress: Optional[ProgressFn] = None,
    ) -> EraseResult:
        """Remove the masked region of `video`; `mask` is a mask video, one image or an array.

        `progress` gets every stage's reports in data-flow order: reading, masks, prior,
        diffusion, decoding, writing (see `progress.py`); None: no reports.
        """
        _check_arguments(video, mask, settings, progress)
        progress = silent if progress is None else progress
        s = settings or self.settings
        self.load(s)
        seed = s.seed if s.seed is not None else secrets.randbelow(SEED_RANGE)

        with _stage(progress, READING):
            clip = video if isinstance(video, media.Video) else media.read_video(video, max_seconds=s.max_seconds)
            holes_full = media.read_masks(mask, clip)

        with _stage(progress, MASKS):
            full = tuple(clip.frames.shape[1:3])
            size = mask_ops.working_size(*full, max_size=s.max_size)
            # At the input size nothing is resized or copied: the stages below never write into their inputs.
            frames = clip.frames if size == full else mask_ops.resize_frames(clip.frames, size)
            holes = holes_full if size == full else mask_ops.resize_masks(holes_full, size)
            del holes_full
            dilated = mask_ops.dilate_masks(holes, s.mask_dilation)

        prior = None
        if s.prior != "none":
            prior = self.make_prior(s)(frames, holes, progress=progress)
        if s.diffusion:
            generated = self.diffuser(frames, dilated, prior, s, seed, progress=progress)
        else:
            generated = prior

        with _stage(progress, WRITING):
            used = dilated if size == full else mask_ops.resize_masks(dilated, full)
            # Prior only, the result is the prior's paste: one array serves as both.
            layers = [generated] if prior is None or prior is generated else [generated, prior]
            pasted = self._paste(clip.frames, layers, used, s.blended)
            prior_full = None if prior is None else pasted[-1]
        return EraseResult(frames=pasted[0], prior=prior_full, masks=used, fps=clip.fps, seed=seed,
                           source=clip.source, source_duration=clip.source_duration)

    @staticmethod
    def _paste(original: np.ndarray, layers: list[np.ndarray], holes: np.ndarray, blended: bool) -> list[np.ndarray]:
        """Each layer's working-size frames pasted into the input-size frames, one frame at a time.

        Per frame the blend mask is made on the hole's box only and only that box is composed;
        the rest is the input frame, copied (a frame with an empty hole is the input frame, and
        its layer frames are not resized). Nothing of the size of the video is made but the
        outputs, so memory stays at the outputs plus a frame's worth.
        """
        size = original.shape[1:3]
        outs = [np.empty_like(original) for _ in layers]
        for t, frame in enumerate(original):
            region = mask_ops.blend_box(holes[t], blended)
            for out, layer in zip(outs, layers):
                out[t] = frame
                if region is None:
                    continue
                rows, cols, blend = region
                fill = layer[t] if layer.shape[1:3] == size else mask_ops.resize_frames(layer[t:t + 1], size)[0]
                out[t, rows, cols] = mask_ops.compose(fill[rows, cols], frame[rows, cols], blend)
        return outs


def erase(
    video: VideoInput,
    mask: MaskInput,
    output: Union[str, Path],
    settings: Optional[Settings] = None,
    progress: Optional[ProgressFn] = None,
    weights_dir: Optional[Union[str, Path]] = None,
) -> EraseResult:
    """One call: load what the settings need, erase, write `output` (audio kept, reported as "saving").

    Everything is checked before any model is loaded: the arguments' types, and that `output` is
    a writable .mp4 path that is neither the video nor the mask (InputError naming both).
    """
    _check_arguments(video, mask, settings, progress)
    inputs = {"input video": video if not isinstance(video, media.Video) else video.source,
              "mask": mask if isinstance(mask, (str, PathLike)) else None}
    check_outputs(inputs, {"output": output})
    progress = silent if progress is None else progress
    eraser = Eraser.from_pretrained(settings, weights_dir=weights_dir)
    result = eraser(video, mask, progress=progress)
    with _stage(progress, SAVING):
        result.save(output)  # with the audio of the input video (`result.source`)
    return result


def _check_settings(settings: object) -> None:
    """InputError unless `settings` is None or a Settings (a dict or keywords are a common slip)."""
    if settings is not None and not isinstance(settings, Settings):
        hint = " (for a dict, use Settings.from_dict(...))" if isinstance(settings, dict) else ""
        raise InputError(f"settings must be a diffueraser.Settings, e.g. Settings(steps=4), "
                         f"got {type(settings).__name__}{hint}")


def _check_arguments(video: object, mask: object, settings: object, progress: object) -> None:
    """InputError naming the argument when one is not of a type `Eraser.__call__` takes; values are
    checked where they are read (`media`, `Settings`)."""
    if not isinstance(video, (str, PathLike, media.Video)):
        raise InputError(f"video must be a file path (str or pathlib.Path) or a media.Video, "
                         f"got {type(video).__name__}")
    if not isinstance(mask, (str, PathLike, np.ndarray, torch.Tensor)):
        raise InputError(f"mask must be a file path (str or pathlib.Path) or a numpy array "
                         f"(bool or uint8, [H, W] or [T, H, W]), got {type(mask).__name__}")
    for name, value in (("video", video), ("mask", mask)):
        if isinstance(value, str) and not value.strip():
            raise InputError(f"{name} is an empty path; give the {name} file")
    _check_settings(settings)
    if progress is not None and not callable(progress):
        raise InputError(f"progress must be a function taking a Progress, or None, got {type(progress).__name__}")
