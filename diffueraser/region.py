"""Crop-to-mask: the parts of the frame a segment's fill needs, so that cost follows the hole.

A crop is the bounding box of a hole's mask over all the frames filled together (a segment),
grown by the mask's own dilation and by a context margin, its sides rounded up to multiples of
8, at least `MIN_CROP` px, and kept inside the frame (moved inward rather than cut, so its size
stays a multiple of 8). The margin on each side is a quarter of the box's longer side, at least
`MIN_CONTEXT` px (8 latent cells of the denoiser, 4 feature cells of ProPainter's transformer):
a square hole then covers at most about 45 % of its crop, an elongated one (a logo, a caption)
far less, so the priors find known pixels all round it and the denoiser sees the texture it
continues; more margin would cost pixels without adding what the hole needs (a moving hole's
background comes from other frames, which the crop follows). A crop is filled at the input's
own resolution when its longer side fits `max_size`, else scaled down only as much as needed.

Holes far apart get a crop each (grown boxes that overlap are merged). `auto` takes the crops
when the pixels they would process are at most `AUTO_SHARE` of what frame mode processes, and
frame mode otherwise (a large or wandering hole gains nothing from crops).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .masks import SIZE_MULTIPLE, working_size
from .settings import REGIONS as MODES

MIN_CONTEXT = 64
"""Fewest pixels of context around a hole's box, on each side."""
CONTEXT_FRACTION = 0.25
"""Context on each side, as a fraction of the box's longer side."""
MIN_CROP = 128
"""Smallest crop side: the models' windows and the VAE's 8x reduction need room."""
AUTO_SHARE = 0.5
"""`auto` crops when the crops' working pixels are at most this share of frame mode's."""


@dataclass(frozen=True)
class Crop:
    """Rows and columns of the input frame filled together, and the size they are filled at."""

    top: int
    left: int
    height: int
    width: int
    working: tuple[int, int]
    """(h, w) the fill runs at: the crop's own size when it fits `max_size`."""

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.height)

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.width)


def plan(holes: np.ndarray, mode: str, max_size: int, grow: int) -> Optional[list[Crop]]:
    """The crops for frames filled together, or None for frame mode.

    `holes` bool [n, H, W] at the input size; `grow` is how far (input pixels) the mask's
    dilation reaches. `mode`: 'frame' (None), 'crop' (crops unless one would be the whole frame)
    or 'auto' (crops only where they clearly save work).
    """
    if mode not in MODES:
        raise ValueError(f"region must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "frame":
        return None
    union = np.logical_or.reduce(holes, axis=0) if len(holes) else np.zeros(holes.shape[1:], bool)
    if not union.any():
        return None
    height, width = union.shape
    boxes = _merge([_grown(box, grow, height, width) for box in _components(union)])
    crops = [_crop(box, height, width, max_size) for box in boxes]
    if any(c.height >= height and c.width >= width for c in crops):
        return None  # a crop as large as the frame is frame mode
    if mode == "auto":
        frame = working_size(height, width, max_size)
        if sum(c.working[0] * c.working[1] for c in crops) > AUTO_SHARE * frame[0] * frame[1]:
            return None
    return crops


def _components(union: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (top, left, bottom, right) of the union's connected parts."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(union.astype(np.uint8), connectivity=8)
    return [(int(s[cv2.CC_STAT_TOP]), int(s[cv2.CC_STAT_LEFT]), int(s[cv2.CC_STAT_TOP] + s[cv2.CC_STAT_HEIGHT]),
             int(s[cv2.CC_STAT_LEFT] + s[cv2.CC_STAT_WIDTH])) for s in stats[1:count]]


def _grown(box: tuple[int, int, int, int], grow: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The box grown by the dilation's reach and the context margin (not yet clipped)."""
    top, left, bottom, right = box
    side = max(bottom - top, right - left) + 2 * grow
    margin = grow + max(MIN_CONTEXT, int(CONTEXT_FRACTION * side))
    return top - margin, left - margin, bottom + margin, right + margin


def _merge(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Boxes that overlap joined into their bounding box, until none overlap."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes)


def _crop(box: tuple[int, int, int, int], height: int, width: int, max_size: int) -> Crop:
    top, left, bottom, right = box
    h = _side(bottom - top, height)
    w = _side(right - left, width)
    top = _place((top + bottom) // 2 - h // 2, h, height)
    left = _place((left + right) // 2 - w // 2, w, width)
    working = (h, w) if max(h, w) <= max_size else working_size(h, w, max_size)
    return Crop(top, left, h, w, working)


def _side(length: int, limit: int) -> int:
    """A crop side: at least MIN_CROP, rounded up to a multiple of 8, at most the frame's (floored to 8)."""
    side = max(length, MIN_CROP)
    side = -(-side // SIZE_MULTIPLE) * SIZE_MULTIPLE
    largest = max(SIZE_MULTIPLE, limit - limit % SIZE_MULTIPLE)
    return min(side, largest)


def _place(start: int, side: int, limit: int) -> int:
    """The start that keeps [start, start + side) inside [0, limit), moving it rather than cutting it."""
    return min(max(0, start), limit - side)
