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
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

import numpy as np
import torch

from . import masks as mask_ops
from . import media
from .errors import InputError
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

    def save(self, path: Union[str, Path], audio_from: Optional[Union[str, Path]] = None) -> Path:
        """Write the result as H.264 mp4, with the audio of `audio_from` (default: the input)."""
        audio = audio_from if audio_from is not None else self.source
        return media.write_video(path, self.frames, self.fps, audio_from=audio)

    def save_prior(self, path: Union[str, Path]) -> Path:
        """Write the prior's completion as H.264 mp4 (no audio)."""
        if self.prior is None:
            raise InputError("this result has no prior video (prior 'none')")
        return media.write_video(path, self.prior, self.fps)


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
        progress = silent if progress is None else progress
        s = settings or self.settings
        self.load(s)
        seed = s.seed if s.seed is not None else secrets.randbelow(SEED_RANGE)

        with _stage(progress, READING):
            clip = video if isinstance(video, media.Video) else media.read_video(video, max_seconds=s.max_seconds)
            holes_full = media.read_masks(mask, clip)

        with _stage(progress, MASKS):
            size = mask_ops.working_size(*clip.frames.shape[1:3], max_size=s.max_size)
            frames = mask_ops.resize_frames(clip.frames, size)
            holes = mask_ops.resize_masks(holes_full, size)
            dilated = mask_ops.dilate_masks(holes, s.mask_dilation)

        prior = None
        if s.prior != "none":
            prior = self.make_prior(s)(frames, holes, progress=progress)
        if s.diffusion:
            generated = self.diffuser(frames, dilated, prior, s, seed, progress=progress)
        else:
            generated = prior

        with _stage(progress, WRITING):
            used = mask_ops.resize_masks(dilated, clip.frames.shape[1:3])
            blend = mask_ops.blend_masks(used) if s.blended else used.astype(np.uint8) * mask_ops.MASK_ON
            out = self._paste(clip.frames, generated, blend)
            prior_full = None if prior is None else self._paste(clip.frames, prior, blend)
        return EraseResult(frames=out, prior=prior_full, masks=used, fps=clip.fps, seed=seed, source=clip.source)

    @staticmethod
    def _paste(original: np.ndarray, generated: np.ndarray, blend: np.ndarray) -> np.ndarray:
        """Working-size frames pasted into the input-size frames through the uint8 blend mask."""
        if generated.shape[1:3] != original.shape[1:3]:
            generated = mask_ops.resize_frames(generated, original.shape[1:3])
        return mask_ops.compose(generated, original, blend)


def erase(
    video: Union[str, Path],
    mask: MaskInput,
    output: Union[str, Path],
    settings: Optional[Settings] = None,
    progress: Optional[ProgressFn] = None,
    weights_dir: Optional[Union[str, Path]] = None,
) -> EraseResult:
    """One call: load what the settings need, erase, write `output` (audio kept, reported as "saving")."""
    progress = silent if progress is None else progress
    eraser = Eraser.from_pretrained(settings, weights_dir=weights_dir)
    result = eraser(video, mask, progress=progress)
    with _stage(progress, SAVING):
        result.save(output, audio_from=video)
    return result
