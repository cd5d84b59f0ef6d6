"""From a video and prompts to a mask video: decode once, track every object, write the union.

Memory does not grow with the video: frames are decoded once, as they come, into a file at the
tracker's working size (uint8, in a temporary folder), so either tracker can read them forwards
and backwards; each object's masks are OR-ed into a second file at that size (uint8 0/255),
scaled to the video's size and encoded frame by frame at the end. Both are read and written
with plain reads and writes, a frame at a time (a memory map's pages would count as the process's
memory as the video went by). RAM
holds a frame or two and the tracker's state; the temporary folder holds about four bytes per
working-size pixel per frame (at most 512 px on the longer side for `flow`, 1024 for the models),
and is removed at the end.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from .. import media
from ..errors import InputError
from ..outputs import check_outputs
from ..progress import MASKS, READING, SAVING, Progress, ProgressFn, silent
from .prompts import Prompt, Prompts, check_prompts, parse_prompts

PathLike = Union[str, os.PathLike]
TRACKERS = ("sam2", "sam2-tiny", "sam2-base-plus", "sam2-large", "edgetam", "sam3", "flow")
"""`flow` needs no checkpoint; the others are transformers' video segmenters ('sam2' is SAM 2.1 small)."""
AUTO_ORDER = ("sam2", "edgetam")
"""What 'auto' picks for clicks and boxes, best first, when its checkpoint is at hand."""
FLOW_MAX_SIDE = 512
"""The weight-free tracker works on frames whose longer side is at most this."""
MODEL_MAX_SIDE = 1024
"""SAM-family trackers see 1024x1024 inputs: frames are kept at most this large."""


@dataclass
class TrackReport:
    """What tracking made: frame count, frames where something is masked, the mean share of the
    frame masked, seconds taken, the tracker that ran (and why, for 'auto'), the output file."""

    frames: int
    frames_with_mask: int
    mean_area: float
    seconds: float
    tracker: str
    output: Path
    fps: float
    note: str = ""
    objects: tuple[int, ...] = ()

    def describe(self) -> str:
        return (f"tracked {len(self.objects)} object(s) with {self.tracker} through {self.frames} frames "
                f"in {self.seconds:.1f} s; masked on {self.frames_with_mask} frames, "
                f"{100 * self.mean_area:.1f}% of the frame on average")


class FrameStore:
    """Frames decoded once into a file: [T, h, w, 3] uint8, read by index with plain reads (not a
    memory map, whose pages would count as the process's memory as the video is read)."""

    def __init__(self, path: Path, count: int, height: int, width: int) -> None:
        self.path, self.count, self.shape = path, count, (height, width, 3)
        self._bytes = height * width * 3
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} of {self.count}")
        data = os.pread(self._fd, self._bytes, index * self._bytes)
        return np.frombuffer(data, np.uint8).reshape(self.shape)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) with the longer side at most `max_side`, both even (for the scaler)."""
    scale = min(1.0, max_side / max(height, width))
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def decode_to_store(stream: "media.VideoStream", folder: Path, size: tuple[int, int],
                    progress: ProgressFn = silent) -> FrameStore:
    """Decode the video once, each frame scaled to `size` (area filter), into a memory-mapped file
    in `folder`: the trackers read it forwards and backwards without the video being in memory."""
    h, w = size
    file = folder / "frames.u8"
    count, total = 0, stream.expected_frames
    with open(file, "wb") as out:
        for frame in stream:
            if frame.shape[:2] != (h, w):
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            out.write(np.ascontiguousarray(frame).tobytes())
            count += 1
            if count % 16 == 0:
                progress(Progress(READING, min(count, total), max(total, count), f"frame {count}"))
    progress(Progress(READING, count, count))
    return FrameStore(file, count, h, w)


class MaskSink:
    """Each object's masks OR-ed into a file of uint8 [T, h, w] (255 = remove) at the working size;
    `write` scales them to the video's size frame by frame as it encodes."""

    def __init__(self, path: Path, count: int, height: int, width: int) -> None:
        self.count, self.size = count, (height, width)
        self._bytes = height * width
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, count * self._bytes)
        self.per_object: dict[int, int] = {}

    def __getitem__(self, index: int) -> np.ndarray:
        data = os.pread(self._fd, self._bytes, index * self._bytes)
        return np.frombuffer(data, np.uint8).reshape(self.size).copy()

    def __call__(self, index: int, obj: int, mask: np.ndarray) -> None:
        self.per_object.setdefault(obj, 0)
        if not mask.any():
            return
        if mask.shape != self.size:
            mask = cv2.resize(mask.astype(np.uint8) * 255, (self.size[1], self.size[0]),
                              interpolation=cv2.INTER_LINEAR) >= 128
        frame = self[index]
        frame[mask] = 255
        os.pwrite(self._fd, frame.tobytes(), index * self._bytes)
        self.per_object[obj] += 1

    def write(self, output: PathLike, fps: float, height: int, width: int, protect: Sequence[PathLike]) -> tuple[int, float]:
        """Encode the masks at (height, width) as an mp4 (white = remove); returns the frames with
        any mask and the mean share of the frame masked."""
        with_mask, area = 0, 0.0
        with media.VideoWriter(output, fps, protect=protect) as writer:
            for index in range(self.count):
                small = self[index]
                full = small if small.shape == (height, width) else cv2.resize(
                    small, (width, height), interpolation=cv2.INTER_LINEAR)
                full = np.where(full >= 128, 255, 0).astype(np.uint8)
                share = np.count_nonzero(full) / full.size
                with_mask += share > 0
                area += share
                writer.write(np.repeat(full[..., None], 3, axis=2))
        return with_mask, area / max(self.count, 1)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def scale_prompts(prompts: Prompts, sx: float, sy: float) -> list[Prompt]:
    """Prompts in working-size pixels (pixel centres kept aligned)."""
    def px(x: float, s: float) -> float:
        return (x + 0.5) * s - 0.5

    out = []
    for p in prompts:
        points = tuple((px(x, sx), px(y, sy)) for x, y in p.points)
        box = None if p.box is None else (p.box[0] * sx, p.box[1] * sy, p.box[2] * sx, p.box[3] * sy)
        out.append(Prompt(p.object, p.frame, points, p.labels, box, p.text))
    return out


def choose_tracker(name: str, prompts: Prompts, weights_dir: Optional[PathLike] = None) -> tuple[str, str]:
    """The tracker to run and a note saying why, for `name` ('auto' or one of TRACKERS).

    'auto' takes SAM 3 for words, else the best SAM-family checkpoint already at hand (nothing is
    downloaded to decide), else the weight-free flow tracker."""
    from . import sam

    if name not in ("auto",) + TRACKERS:
        raise InputError(f"unknown tracker {name!r}; choose auto, {', '.join(TRACKERS)}")
    if prompts.has_text:
        if name not in ("auto", "sam3"):
            raise InputError(f"words (\"{next(p.text for p in prompts if p.text)}\") need the SAM 3 tracker; "
                             f"--tracker {name} takes clicks and boxes only")
        return "sam3", "words need SAM 3"
    if name != "auto":
        return name, "chosen"
    for candidate in AUTO_ORDER:
        if sam.available(candidate, weights_dir):
            return candidate, f"auto: the {sam.MODELS[candidate].title} checkpoint is at hand"
    return "flow", ("auto: no SAM 2.1 or EdgeTAM checkpoint is at hand, so the weight-free flow tracker runs "
                    "(less exact; fetch one with --tracker sam2 online)")


def track_to_file(
    video: PathLike,
    prompts: Union[Prompts, str, list, dict],
    output: PathLike,
    tracker: str = "auto",
    weights_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
    max_seconds: Optional[float] = None,
    progress: Optional[ProgressFn] = None,
    device: Optional[str] = None,
) -> TrackReport:
    """Track the prompted objects through `video` and write their union as a mask video (white =
    remove) at the video's size and frame rate. Words go to SAM 3 (every instance they name); clicks
    and boxes given with words go to the best clicks tracker at hand, into the same mask. InputError
    for prompts that do not fit the video, words that match nothing or an object that is found
    nowhere; CheckpointError when the chosen model's checkpoint is missing."""
    progress = progress or silent
    prompts = parse_prompts(prompts)
    start = time.perf_counter()
    stream = media.VideoStream(video, max_seconds=max_seconds)
    # Checked against the stated size and length first, so nothing is loaded or decoded for a bad prompt.
    check_prompts(prompts, stream.width, stream.height, stream.expected_frames, slack=1)
    check_outputs({"input video": video}, {"mask": output})
    name, note = choose_tracker(tracker, prompts, weights_dir)
    runs = [(name, list(prompts))]
    if name == "sam3" and prompts.has_clicks:
        # SAM 3 reads the words; the clicks and boxes go to the best clicks tracker at hand.
        clicks = Prompts(tuple(Prompt(p.object, p.frame, p.points, p.labels, p.box) for p in prompts
                               if p.points or p.box is not None))
        other, why = choose_tracker("auto", clicks, weights_dir)
        runs = [(name, [Prompt(p.object, p.frame, text=p.text) for p in prompts if p.text]), (other, list(clicks))]
        name, note = f"{name}+{other}", f"{note}; clicks: {why}"
    engines = [(_load(n, weights_dir, local_files_only, device), group) for n, group in runs]
    max_side = FLOW_MAX_SIDE if name == "flow" else MODEL_MAX_SIDE
    h, w = working_size(stream.height, stream.width, max_side)
    with tempfile.TemporaryDirectory(prefix="diffueraser-track-") as tmp:
        frames = decode_to_store(stream, Path(tmp), (h, w), progress)
        sink = MaskSink(Path(tmp) / "masks.u8", len(frames), h, w)
        try:
            check_prompts(prompts, stream.width, stream.height, len(frames))
            done = [0]
            total = len(frames) * sum(len({p.object for p in group}) for _, group in engines)

            def step() -> None:
                done[0] += 1
                progress(Progress(MASKS, min(done[0], total), total, f"{name}: frame {done[0]} of {total}"))

            for engine, group in engines:
                engine.track(frames, scale_prompts(group, w / stream.width, h / stream.height), sink, step)
            lost = [obj for obj in prompts.objects if not sink.per_object.get(obj)]
            words = [p.text for p in prompts if p.text and p.object in lost]
            if words:
                raise InputError(f"the words {', '.join(repr(t) for t in words)} matched nothing in the video: "
                                 f"not found by SAM 3 on any frame; try other words (\"the dog\", \"a red car\") "
                                 f"or click on the object")
            if lost:
                raise InputError(f"the tracked mask of object{'s' if len(lost) > 1 else ''} "
                                 f"{', '.join(map(str, lost))} is empty on every frame: the object was not found; "
                                 f"click on it (or draw a box around it) on a frame where it is clearly visible")
            count = len(frames)
            progress(Progress(SAVING, 0, 1, str(output)))
            with_mask, area = sink.write(output, stream.fps, stream.height, stream.width, protect=[video])
            progress(Progress(SAVING, 1, 1))
        finally:
            frames.close()
            sink.close()
    return TrackReport(count, with_mask, area, time.perf_counter() - start, name, Path(output), stream.fps,
                       note, tuple(prompts.objects))


def _load(name: str, weights_dir: Optional[PathLike], local_files_only: bool, device: Optional[str]):
    if name == "flow":
        from .flowtrack import FlowTracker

        return FlowTracker()
    from . import sam

    return sam.load_tracker(name, weights_dir=weights_dir, local_files_only=local_files_only, device=device)
