"""Masks of burnt-in text (subtitles, captions, on-screen text), found without a mask from the user.

One decoding pass over the video, in bounded memory: the region where text is looked for is
scaled so its longer side is at most `DETECT_SIDE`; every `stride`-th frame (about 5 a second) the
text detector runs on it; on the frames between, each line's edges are compared with the frame it
was detected on, so a line that appears or disappears between two detections is masked from the
frame it appears on. Only the lines' quadrilaterals are kept (a few numbers per detection), then
`text_track` decides the frames each is drawn on, and the mask video is drawn and encoded frame
by frame: each line's rotated rectangle grown by a margin relative to its height.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Optional

import cv2
import numpy as np

from .. import media
from ..errors import InputError
from ..progress import MASKS, WRITING, Progress, ProgressFn, silent
from .text_detect import (DETECT_SIDE, DETECTOR_NAME, TextDetector, crop_box, edges, grow_quad, line_height, shared_detector,
                          still_there)
from .text_io import write_mask_video
from .text_region import REGION_HELP, Region, parse_region
from .text_track import Sighting, Span, frames_of, spans

__all__ = ["Region", "parse_region", "TextReport", "text_mask_to_file", "REGION_HELP", "LARGE_HOLE"]

KEY_INTERVAL = 0.2
"""Seconds between two detections; the frames between are checked by their edges."""
LARGE_HOLE = 0.25
"""A mask covering more than this share of a frame is a large hole: the user is warned."""


@dataclass(frozen=True)
class TextReport:
    """What text detection found and wrote."""

    output: str
    frames: int
    frames_with_mask: int
    mean_area: float
    """Mean share of a frame's pixels masked, over all frames."""
    max_area: float
    """Largest share of one frame masked."""
    seconds: float
    detections: int
    """Frames the detector ran on (the others were checked by their edges)."""
    region: str
    detector: str = DETECTOR_NAME
    warning: Optional[str] = None
    """Set when the hole is large (a slide deck, a screen of text): the fill will be invented."""


@dataclass
class _Area:
    """Running figures of the masked share of each frame."""

    frames_with_mask: int = 0
    total: float = 0.0
    largest: float = 0.0

    def add(self, share: float) -> None:
        self.frames_with_mask += share > 0
        self.total += share
        self.largest = max(self.largest, share)


@dataclass
class _Open:
    """A sighting still being followed forward, with its reference edges in detection pixels."""

    sighting: Sighting
    box: tuple[slice, slice]
    reference: np.ndarray
    alive: bool = True


def text_mask_to_file(video: media.PathLike, output: media.PathLike, region: "str | Region" = "full",
                      max_seconds: Optional[float] = None, progress: Optional[ProgressFn] = None,
                      stride: Optional[int] = None, detector: Optional[TextDetector] = None) -> TextReport:
    """Detect the text of `video` inside `region` and write its mask video to `output` (white = remove).

    InputError when the region is malformed or outside the frame, or when no text is found (then
    nothing is written). `stride`: frames between detections (default: about 5 detections a second).
    """
    started = time.perf_counter()
    progress = progress or silent
    region = parse_region(region)
    stream = media.VideoStream(video, max_seconds=max_seconds)
    rect = region.rect(stream.width, stream.height)
    stride = max(1, int(stride or round(stream.fps * KEY_INTERVAL)))
    found, keys, count = _scan(stream, rect, stride, detector or shared_detector(), progress)
    drawn = spans(found, keys)
    if not drawn:
        where = "" if region.name == "full" else f" in the region '{region}'"
        raise InputError(f"no text found{where} in the video: nothing to erase"
                         + ("" if region.name == "full" else " (try the region 'full')"))
    area = _Area()
    masks = _draw(drawn, count, stream.width, stream.height, rect, area, progress)
    write_mask_video(output, masks, stream.fps, protect=[video])
    report = TextReport(
        output=str(output), frames=count, frames_with_mask=area.frames_with_mask,
        mean_area=area.total / max(1, count), max_area=area.largest, seconds=time.perf_counter() - started,
        detections=len(keys), region=str(region))
    if report.max_area > LARGE_HOLE:
        report = _with_warning(report)
    return report


def _with_warning(report: TextReport) -> TextReport:
    return replace(report, warning=(
        f"the text mask covers up to {report.max_area:.0%} of the frame: a hole this large is filled "
        "with invented content; check the result, or restrict the region"))


def _scan(stream: media.VideoStream, rect: tuple[int, int, int, int], stride: int, detector: TextDetector,
          progress: ProgressFn) -> tuple[list[Sighting], list[int], int]:
    """Detections on every `stride`-th frame, each followed by its edges to the neighbouring keyframes.

    Holds the frames since the last keyframe (grey, detection size) and nothing else per frame."""
    x0, y0, x1, y1 = rect
    scale = min(1.0, DETECT_SIDE / max(x1 - x0, y1 - y0))
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    total = stream.expected_frames
    found: list[Sighting] = []
    keys: list[int] = []
    following: list[_Open] = []
    since_key: deque = deque()
    count = 0
    for t, frame in enumerate(stream):
        count = t + 1
        crop = frame[y0:y1, x0:x1]
        small = crop if scale == 1.0 else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        for f in following:
            if f.alive and still_there(f.reference, gray[f.box]):
                f.sighting.last = t
            else:
                f.alive = False
        if t % stride == 0:
            keys.append(t)
            following = _detect(detector, small, gray, t, since_key, scale, (x0, y0))
            found.extend(f.sighting for f in following)
            since_key.clear()
        since_key.append((t, gray))
        last_small = small
        progress(Progress(MASKS, min(count, total), max(total, count), "detecting text"))
    if count == 0:
        raise InputError("the video has no frames")
    if keys[-1] != count - 1:  # the last frame is a keyframe too: a moving line is followed to the end
        since_key.pop()
        keys.append(count - 1)
        found.extend(f.sighting for f in _detect(detector, last_small, gray, count - 1, since_key, scale, (x0, y0)))
    return found, keys, count


def _detect(detector: TextDetector, small: np.ndarray, gray: np.ndarray, t: int, since_key: deque,
            scale: float, offset: tuple[int, int]) -> list[_Open]:
    """Sightings on keyframe `t`, each followed back over the frames since the previous keyframe."""
    height, width = gray.shape
    opened = []
    for line in detector.detect(small):
        box = crop_box(line, width, height)
        if box is None:
            continue
        reference = edges(gray[box])
        first = t
        for u, earlier in reversed(since_key):
            if not still_there(reference, earlier[box]):
                break
            first = u
        quad = line.quad / scale + np.asarray(offset, np.float32)
        opened.append(_Open(Sighting(t, quad, first, t), box, reference))
    return opened


def _draw(drawn: list[Span], count: int, width: int, height: int, rect: tuple[int, int, int, int],
          area: _Area, progress: ProgressFn):
    """Mask frames (uint8, 255 = remove) one at a time, each one's masked share added to `area`."""
    x0, y0, x1, y1 = rect
    inside = np.zeros((height, width), bool)
    inside[y0:y1, x0:x1] = True
    for t, quads in enumerate(frames_of(drawn, count)):
        mask = np.zeros((height, width), np.uint8)
        for quad in quads:
            _fill_line(mask, quad, rect)
        mask[~inside] = 0
        area.add(np.count_nonzero(mask) / mask.size)
        progress(Progress(WRITING, t + 1, count, "writing the text mask"))
        yield mask


def _fill_line(mask: np.ndarray, quad: np.ndarray, rect: tuple[int, int, int, int]) -> None:
    """Draw one line, grown by its margin; a line ending within its height of the region's left or
    right edge is drawn to that edge (letters scrolling in or out are cut, and missed, there)."""
    grown = np.round(grow_quad(quad)).astype(np.int32)
    cv2.fillPoly(mask, [grown], 255)
    height = line_height(quad)
    x0, y0, x1, y1 = grown[:, 0].min(), grown[:, 1].min(), grown[:, 0].max(), grown[:, 1].max()
    rows = slice(max(0, y0), max(0, y1 + 1))
    if quad[:, 0].min() - rect[0] < height:
        mask[rows, rect[0]:max(rect[0], x0 + 1)] = 255
    if rect[2] - quad[:, 0].max() < height:
        mask[rows, min(rect[2], x1):rect[2]] = 255
