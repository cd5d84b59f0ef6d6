"""End to end: read → working size → masks → prior → diffusion → compose → result.

`Eraser` holds the loaded models (built once, reused across calls); a call turns a video and a
mask into an `EraseResult`. Nothing here knows where checkpoints live (`weights/` does) or how
a model computes (`models/`, `prior/`, `diffusion/`).
"""
from __future__ import annotations

import contextlib
import copy
import math
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

import numpy as np
import torch

from . import masks as mask_ops
from . import media, region, segments
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
    """Seconds the whole input video stream lasts (None: unknown). More than
    `duration` when `max_seconds` trimmed the video."""
    regions: list[str] = field(default_factory=list)
    """How each segment was filled: "frames 0-99: whole frame at 960x536" or its crops."""

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

        The whole video is held in memory (decoded, and the result): for long videos use
        `erase_file`, which streams. `progress` gets every stage's reports in data-flow order:
        reading, masks, prior, diffusion, decoding, writing (see `progress.py`); None: no reports.
        """
        _check_arguments(video, mask, settings, progress)
        progress = silent if progress is None else progress
        s = settings or self.settings
        self.load(s)
        seed = s.seed if s.seed is not None else secrets.randbelow(SEED_RANGE)

        with _stage(progress, READING):
            clip = video if isinstance(video, media.Video) else media.read_video(video, max_seconds=s.max_seconds)
            holes = media.read_masks(mask, clip)
        frames = np.empty_like(clip.frames)
        # Prior only, the result is the prior's paste: one array serves as both.
        prior = None if s.prior == "none" else frames if not s.diffusion else np.empty_like(clip.frames)
        used = np.empty(holes.shape, bool)
        regions: list[str] = []
        stream = self._stream(iter(clip.frames), iter(holes), clip.num_frames, clip.frames.shape[1:3], s, seed,
                              progress, regions)
        for t, out, prior_out, hole in stream:
            frames[t], used[t] = out, hole
            if prior is not None and prior is not frames:
                prior[t] = prior_out
        del holes
        return EraseResult(frames=frames, prior=prior, masks=used, fps=clip.fps, seed=seed,
                           source=clip.source, source_duration=clip.source_duration, regions=regions)

    def erase_file(
        self,
        video: Union[str, Path],
        mask: MaskInput,
        output: Union[str, Path],
        settings: Optional[Settings] = None,
        progress: Optional[ProgressFn] = None,
        prior_output: Optional[Union[str, Path]] = None,
    ) -> "EraseSummary":
        """Erase `video` into the mp4 `output` (audio kept), and the prior's video into
        `prior_output` if given, streaming: frames are decoded, filled a segment at a time and
        encoded as they come, so memory does not grow with the video's length.

        Outputs are checked against the inputs and each other before anything starts, and
        appear only when complete (an existing file is replaced atomically).
        """
        _check_arguments(video, mask, settings, progress)
        if isinstance(video, media.Video):
            raise InputError("erase_file reads the video from its file: give a path (for decoded frames, call the Eraser)")
        s = settings or self.settings
        mask_path = mask if isinstance(mask, (str, PathLike)) else None
        check_outputs({"input video": video, "mask": mask_path}, {"output": output, "prior output": prior_output},
                      create_folders=True)
        if prior_output is not None and s.prior == "none":
            raise InputError(f"a prior output ({prior_output}) was asked for but prior 'none' makes no prior video")
        progress = silent if progress is None else progress
        self.load(s)
        seed = s.seed if s.seed is not None else secrets.randbelow(SEED_RANGE)

        with _stage(progress, READING):
            stream = media.VideoStream(video, max_seconds=s.max_seconds)
            holes = media.MaskStream(mask, stream.fps, stream.expected_frames, stream.height, stream.width)
        protect = [p for p in (video, mask_path) if p is not None]
        count = 0
        with contextlib.ExitStack() as stack:
            writer = stack.enter_context(media.VideoWriter(output, stream.fps, audio_from=video, protect=protect))
            prior_writer = None if prior_output is None else stack.enter_context(
                media.VideoWriter(prior_output, stream.fps, protect=protect))
            regions: list[str] = []
            results = self._stream(iter(stream), iter(holes), stream.expected_frames, (stream.height, stream.width),
                                   s, seed, progress, regions, with_holes=False)
            for _, out, prior_out, _ in results:
                writer.write(out)
                if prior_writer is not None:
                    prior_writer.write(prior_out)
                count += 1
            with _stage(progress, SAVING):
                pass  # the writers finish (and rename) as the stack closes
        return EraseSummary(num_frames=count, fps=stream.fps, seed=seed, output=Path(output),
                            prior_output=None if prior_output is None else Path(prior_output),
                            source_duration=stream.source_duration, regions=regions)

    def _stream(self, frames: Iterator[np.ndarray], holes: Iterator[np.ndarray], expected: int,
                size: tuple[int, int], s: Settings, seed: int, progress: ProgressFn,
                regions: list[str], with_holes: bool = True,
                ) -> Iterator[tuple[int, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]]:
        """(t, result frame, prior frame or None, dilated hole or None unless `with_holes`) at the
        input size `size`, for every frame in order, filling the video a segment at a time (see
        `segments.py`).

        A video of one segment is filled whole, as the method runs it; segment k of a longer
        one uses seed + k, and neighbouring segments are cross-faded where they overlap. A line
        per segment saying how it was filled (whole frame or crops) goes into `regions`.
        """
        longest = s.segment_frames or segments.segment_length(size, mask_ops.working_size(*size, max_size=s.max_size))
        overlap = segments.overlap_for(longest)
        length, parts = segments.plan(expected, longest, overlap)
        stride = length - overlap
        layers = 2 if s.diffusion and s.prior != "none" else 1  # the result, and the prior when it differs
        pending: list[tuple[np.ndarray, Optional[np.ndarray]]] = []  # the last segment's shared frames
        done = 0
        for segment in segments.split(frames, holes, length, overlap):
            index = segment.start // stride
            whole = segment.last and index == 0
            report = progress if whole else _share(progress, index, max(parts, index + 1), "segment")
            pieces = self._fill(segment.frames, segment.holes, s, (seed + index) % SEED_RANGE, report)
            regions.append(_describe(segment.start, len(segment.frames), pieces, size))
            n, keep = len(segment.frames), 0 if segment.last else overlap
            progress(Progress(WRITING, done, max(done, expected)))
            for i in range(n):
                piece_holes = [piece.hole(i) for piece in pieces]
                out = self._paste_frame(segment.frames[i], pieces, piece_holes, i, s.blended, layers)
                result, prior = out[0], (out[-1] if s.prior != "none" else None)
                if i < segment.shared:
                    earlier, earlier_prior = pending[i]
                    result = segments.crossfade(earlier, result, i, segment.shared)
                    prior = None if prior is None else segments.crossfade(earlier_prior, prior, i, segment.shared)
                if i >= n - keep:
                    # Held until the next segment has filled it too; copied: the buffer is reused.
                    pending.append((result.copy(), None if prior is None else prior.copy()))
                    continue
                yield segment.start + i, result, prior, _full_hole(pieces, piece_holes, size) if with_holes else None
                done += 1
            pending = pending[len(pending) - keep:] if keep else []
            # The stated length is an estimate: the last segment ends the stage, whatever it said.
            progress(Progress(WRITING, done, done if segment.last else max(done, expected)))

    def _fill(self, frames: np.ndarray, holes: np.ndarray, s: Settings, seed: int,
              progress: ProgressFn) -> list["_Piece"]:
        """The fills of frames filled together: one piece for the whole frame, or one per crop
        around the holes (`region.py`); none where no frame has a hole."""
        if not holes.any():
            return []
        full = tuple(frames.shape[1:3])
        working = mask_ops.working_size(*full, max_size=s.max_size)
        reach = math.ceil((s.mask_dilation + 1) * max(full) / max(working))  # the dilation, in input pixels
        crops = region.plan(holes, s.region, s.max_size, reach)
        if crops is None:
            return [self._fill_piece(frames, holes, slice(None), slice(None), working, s, seed, progress)]
        return [self._fill_piece(np.ascontiguousarray(frames[:, c.rows, c.cols]), holes[:, c.rows, c.cols],
                                 c.rows, c.cols, c.working, s, seed,
                                 progress if len(crops) == 1 else _share(progress, k, len(crops), "crop"))
                for k, c in enumerate(crops)]

    def _fill_piece(self, frames: np.ndarray, holes_full: np.ndarray, rows: slice, cols: slice,
                    size: tuple[int, int], s: Settings, seed: int, progress: ProgressFn) -> "_Piece":
        """Fill frames [n, h, w, 3] (a whole frame or a crop) at the working size `size`."""
        full = tuple(frames.shape[1:3])
        with _stage(progress, MASKS):
            # At the input size nothing is resized or copied: the stages below never write into their inputs.
            work = frames if size == full else mask_ops.resize_frames(frames, size)
            holes = holes_full if size == full else mask_ops.resize_masks(holes_full, size)
            dilated = mask_ops.dilate_masks(holes, s.mask_dilation)
        prior = None
        if s.prior != "none":
            prior = self.make_prior(s)(work, holes, progress=progress)
        generated = self.diffuser(work, dilated, prior, s, seed, progress=progress) if s.diffusion else prior
        fills = [generated] if prior is None or prior is generated else [generated, prior]
        return _Piece(rows, cols, fills, dilated, full)

    @staticmethod
    def _paste_frame(frame: np.ndarray, pieces: list["_Piece"], holes: list[np.ndarray], i: int,
                     blended: bool, layers: int) -> list[np.ndarray]:
        """Frame i of each layer (the result, then the prior when it is another video): every
        piece's working-size fill pasted into the input-size frame (`holes`: each piece's
        dilated hole of the frame at its input size).

        Per piece the blend mask is made on the hole's box only and only that box is composed;
        the rest is the input frame. A frame with no hole is the input frame itself (not copied),
        and the fills are not resized for it.
        """
        outs: Optional[list[np.ndarray]] = None
        for piece, hole in zip(pieces, holes):
            region_ = mask_ops.blend_box(hole, blended)
            if region_ is None:
                continue
            rows, cols, blend = region_
            original = frame[piece.rows, piece.cols]
            if outs is None:
                outs = [frame.copy() for _ in piece.fills]
            for out, fill in zip(outs, piece.fills):
                layer = fill[i] if fill.shape[1:3] == original.shape[:2] else \
                    mask_ops.resize_frames(fill[i:i + 1], original.shape[:2])[0]
                out[piece.rows, piece.cols][rows, cols] = mask_ops.compose(layer[rows, cols], original[rows, cols], blend)
        return outs if outs is not None else [frame] * layers


@dataclass
class _Piece:
    """What one fill made: its place in the frame, its layers and dilated holes at its working
    size, and its size in the input frame."""

    rows: slice
    cols: slice
    fills: list[np.ndarray]
    dilated: np.ndarray
    size: tuple[int, int]

    @property
    def working(self) -> tuple[int, int]:
        return tuple(self.dilated.shape[1:])

    def hole(self, i: int) -> np.ndarray:
        """Frame i's dilated hole at the input size (resized one frame at a time: no
        input-size copy of the segment's holes)."""
        if self.working == self.size:
            return self.dilated[i]
        return mask_ops.resize_masks(self.dilated[i:i + 1], self.size)[0]


def _full_hole(pieces: list[_Piece], holes: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """A frame's dilated hole over the whole frame (bool [H, W]) from its pieces' holes."""
    if len(pieces) == 1 and pieces[0].size == size:
        return holes[0]
    hole = np.zeros(size, bool)
    for piece, part in zip(pieces, holes):
        hole[piece.rows, piece.cols] |= part
    return hole


def _describe(start: int, count: int, pieces: list[_Piece], size: tuple[int, int]) -> str:
    """One line on how frames [start, start + count) were filled."""
    frames = f"frames {start}-{start + count - 1}"
    if not pieces:
        return f"{frames}: no hole"
    if pieces[0].size == size:
        h, w = pieces[0].working
        return f"{frames}: whole frame at {w}x{h}"
    crops = []
    for p in pieces:
        h, w = p.size
        scale = "" if p.working == (h, w) else f" at {p.working[1]}x{p.working[0]}"
        crops.append(f"{w}x{h} at ({p.cols.start}, {p.rows.start}){scale}")
    return f"{frames}: crop{'s' if len(crops) > 1 else ''} " + "; ".join(crops)


def _share(progress: ProgressFn, index: int, parts: int, name: str) -> ProgressFn:
    """Reports of part `index` of `parts` (a segment, a crop) as parts of whole stages."""
    def report(p: Progress) -> None:
        where = f"{name} {index + 1} of {parts}" + (f", {p.detail}" if p.detail else "")
        progress(Progress.permille(p.stage, (index + p.fraction) / parts, where))
    return report


@dataclass
class EraseSummary:
    """What `Eraser.erase_file` wrote."""

    num_frames: int
    fps: float
    seed: int
    output: Path
    prior_output: Optional[Path] = None
    source_duration: Optional[float] = None
    """Seconds the whole input video stream lasts (None: unknown)."""
    regions: list[str] = field(default_factory=list)
    """How each segment was filled (see `EraseResult.regions`)."""

    @property
    def duration(self) -> float:
        """Seconds of video processed and written."""
        return self.num_frames / self.fps


def erase(
    video: Union[str, Path],
    mask: MaskInput,
    output: Union[str, Path],
    settings: Optional[Settings] = None,
    progress: Optional[ProgressFn] = None,
    weights_dir: Optional[Union[str, Path]] = None,
) -> EraseSummary:
    """One call: load what the settings need, erase, write `output` (audio kept), streaming.

    Everything is checked before any model is loaded: the arguments' types, and that `output` is
    a writable .mp4 path that is neither the video nor the mask (InputError naming both).
    """
    _check_arguments(video, mask, settings, progress)
    inputs = {"input video": video if not isinstance(video, media.Video) else video.source,
              "mask": mask if isinstance(mask, (str, PathLike)) else None}
    check_outputs(inputs, {"output": output})
    eraser = Eraser.from_pretrained(settings, weights_dir=weights_dir)
    return eraser.erase_file(video, mask, output, progress=progress)


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
