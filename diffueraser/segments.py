"""Long videos in segments: frames gathered a segment at a time from a stream, neighbouring
segments cross-faded over the frames they share.

A video that fits in one segment is processed whole, exactly as the method runs it. A longer
one is cut into segments of one length that overlap by a quarter of it (the overlap rule of the
method's own diffusion windows, clip_length // 4), and each is filled on its own; over the
shared frames the two results are joined with linear ramps, as the windows' latents are. The
longest segment comes from a budget of host memory for what a segment holds, so memory is
bounded by the segment, not by the video.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

SEGMENT_BUDGET_BYTES = 1536 * 2**20
"""Host memory for what one segment holds: input frames and holes, working frames, prior, result
(at 1080p with the default working size: 124 frames)."""
MIN_SEGMENT_FRAMES = 48
"""Never shorter: the fill needs time to reveal the background (and the denoiser two windows)."""
WORKING_COPIES = 3
"""Working-size RGB frames held per frame of a segment: resized input, prior, diffusion result."""


def segment_length(frame_size: tuple[int, int], working: tuple[int, int], budget: int = SEGMENT_BUDGET_BYTES) -> int:
    """Frames per segment that fit the budget at this input size (H, W) and working size."""
    pixels, work = frame_size[0] * frame_size[1], working[0] * working[1]
    per_frame = 4 * pixels + (3 * WORKING_COPIES + 3) * work  # RGB + hole at both sizes, the grown holes
    return max(MIN_SEGMENT_FRAMES, budget // per_frame)


def overlap_for(length: int) -> int:
    """Frames two neighbouring segments share."""
    return length // 4


def plan(expected: int, length: int, overlap: int) -> tuple[int, int]:
    """(frames per segment, segments) for a video of about `expected` frames: as few segments of
    at most `length` frames as cover it, all of one length (no short last segment). A video that
    fits keeps the whole `length`, so a few frames more than expected still make one segment
    (buffers are allocated, not touched: memory follows the frames actually read)."""
    if expected <= length:
        return length, 1
    count = -(-(expected - overlap) // (length - overlap))
    return -(-(expected - overlap) // count) + overlap, count


@dataclass
class Segment:
    """Frames [start, start + len(frames)) of the video with their holes (views into a buffer
    that the next segment reuses: use them before asking for the next)."""

    start: int
    frames: np.ndarray
    """uint8 [n, H, W, 3] at the input size."""
    holes: np.ndarray
    """bool [n, H, W] at the input size."""
    shared: int
    """Leading frames that the previous segment also had."""
    last: bool


def split(frames: Iterator[np.ndarray], holes: Iterator[np.ndarray], length: int, overlap: int) -> Iterator[Segment]:
    """Segments of `length` frames sharing `overlap` frames, the last one shorter where the
    stream ends (see `plan` for lengths that avoid that). Holds `length` frames and one more."""
    if not 0 <= overlap < length:
        raise ValueError(f"overlap must be in [0, {length}), got {overlap}")
    fbuf: Optional[np.ndarray] = None
    hbuf: Optional[np.ndarray] = None
    ahead = next(frames, None)  # the frame after the buffer: whether another segment follows
    count, start, shared = 0, 0, 0
    while ahead is not None:
        while count < length and ahead is not None:
            if fbuf is None:
                fbuf = np.empty((length, *ahead.shape), np.uint8)
                hbuf = np.empty((length, *ahead.shape[:2]), bool)
            fbuf[count], hbuf[count] = ahead, next(holes)
            count += 1
            ahead = next(frames, None)
        last = ahead is None
        yield Segment(start, fbuf[:count], hbuf[:count], shared, last)
        if last:
            return
        fbuf[:overlap] = fbuf[count - overlap:count].copy()
        hbuf[:overlap] = hbuf[count - overlap:count].copy()
        count, start, shared = overlap, start + count - overlap, overlap


def crossfade(earlier: np.ndarray, later: np.ndarray, i: int, shared: int) -> np.ndarray:
    """Frame i of `shared` frames two segments both filled: a linear ramp from the earlier
    segment's result to the later's. Pixels where both agree (everything outside the holes)
    are kept exactly."""
    differ = np.any(earlier != later, axis=-1)
    if not differ.any():
        return later
    rows, cols = np.nonzero(differ.any(axis=1))[0], np.nonzero(differ.any(axis=0))[0]
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    w = (i + 1) / (shared + 1)
    out = later.copy()
    mixed = (1 - w) * earlier[box].astype(np.float32) + w * later[box].astype(np.float32)
    out[box] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out
