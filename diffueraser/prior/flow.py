"""Classical optical flow for the weight-free prior: OpenCV DIS on grey frames at a reduced
"flow size", completed inside the holes by smooth interpolation from the hole border, and read
as full-size displacements only at the points the prior asks about.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
DIS_MIN_SIDE = 32
"""Flow frames are enlarged to at least this side: DIS refuses images under 12 pixels and is
unreliable well above that."""
SMOOTHING_PASSES = 4
"""3x3 averaging passes inside the hole after push-pull, to round off its blocky coarse levels."""
EPS = 1e-6
SOBEL_NORM = 8.0
"""cv2.Sobel's 3x3 kernel sums to 8 times the derivative."""
SQUARE_3X3 = np.ones((3, 3), np.uint8)
REMAP_ROW = 1024
"""Points are laid out in rows of this length for cv2.remap (which refuses sides over 32767)."""


def flow_scale(height: int, width: int, max_side: int) -> float:
    """Factor from full size to flow size: the longer side at most `max_side`, the shorter side
    at least DIS_MIN_SIDE."""
    scale = min(1.0, max_side / max(height, width))
    return max(scale, DIS_MIN_SIDE / min(height, width))


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of a frame resized by `scale`, at least one pixel."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to (height, width): a small pixel is a hole if any part of it is."""
    if mask.shape == size:
        return mask.copy()
    area = cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return area > EPS


def smooth_fill(values: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """`values` (float32 [H, W] or [H, W, C]) with the hole replaced by a smooth interpolation of
    the known pixels (push-pull pyramid, then a few averaging passes): a cheap stand-in for a
    Laplace fill that continues the border values smoothly into the hole. Only a window around
    the hole, as wide again as the hole on each side, is looked at."""
    values = np.asarray(values, dtype=np.float32)
    if not hole.any():
        return values.copy()
    if hole.all():
        return np.zeros_like(values)
    rows = np.nonzero(hole.any(axis=1))[0]
    cols = np.nonzero(hole.any(axis=0))[0]
    pad_y, pad_x = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    window = (slice(max(0, rows[0] - pad_y), rows[-1] + 1 + pad_y),
              slice(max(0, cols[0] - pad_x), cols[-1] + 1 + pad_x))
    out = values.copy()
    out[window] = _push_pull(values[window], hole[window])
    return out


def _push_pull(values: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Known values averaged down a pyramid until no pixel is empty, then blended back up: each
    level keeps what it knows and takes the rest from the level below."""
    known = (~hole).astype(np.float32)
    if not known.any():
        return np.zeros_like(values)
    expand = (lambda w: w[..., None]) if values.ndim == 3 else (lambda w: w)
    levels = [(values * expand(known), known)]
    while levels[-1][1].min() <= 0 and min(levels[-1][1].shape) > 1:
        v, w = levels[-1]
        half = (max(1, (w.shape[1] + 1) // 2), max(1, (w.shape[0] + 1) // 2))
        v_half = cv2.resize(v, half, interpolation=cv2.INTER_AREA).reshape(half[1], half[0], *values.shape[2:])
        levels.append((v_half, cv2.resize(w, half, interpolation=cv2.INTER_AREA)))
    v, w = levels[-1]
    filled = v / expand(np.maximum(w, EPS))
    if (w <= 0).any():  # the coarsest level still has empty pixels: use the mean of the others
        mean = filled[w > 0].mean(axis=0)
        filled[w <= 0] = mean
    for v, w in reversed(levels[:-1]):
        up = cv2.resize(filled, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR)
        up = up.reshape(v.shape)
        alpha = expand(np.clip(w, 0.0, 1.0))
        filled = v / expand(np.maximum(w, EPS)) * alpha + up * (1.0 - alpha)
    keep = expand(known) > 0
    for _ in range(SMOOTHING_PASSES):
        filled = np.where(keep, values, cv2.blur(filled, (3, 3)).reshape(values.shape))
    return np.where(keep, values, filled).astype(np.float32)


def flow_grey(frame: np.ndarray, hole: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A frame as DIS input: grey, at flow size, its hole smoothly filled so that the removed
    object's motion does not leak into the flow around it."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if grey.shape != size:
        grey = cv2.resize(grey, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    filled = smooth_fill(grey.astype(np.float32), hole)
    return np.clip(filled + 0.5, 0, 255).astype(np.uint8)


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`image` (float32 [H, W] or [H, W, C]) at float points (x, y), bilinear, borders
    replicated: [N] or [N, C]. OpenCV's remap, whose weights are exact to 1/32 pixel."""
    n = len(x)
    if n == 0:
        return np.zeros((0, *image.shape[2:]), np.float32)
    pad = (-n) % REMAP_ROW
    mx = np.concatenate([x.astype(np.float32), np.zeros(pad, np.float32)]).reshape(-1, REMAP_ROW)
    my = np.concatenate([y.astype(np.float32), np.zeros(pad, np.float32)]).reshape(-1, REMAP_ROW)
    out = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, *image.shape[2:])[:n]


@dataclass
class FlowPair:
    """Completed flows between neighbouring frames a and b at flow size (in flow-size pixels),
    how fast each completed flow changes inside its hole, the factors from full size to flow
    size, and the full (height, width)."""

    forward: np.ndarray
    backward: np.ndarray
    shear_forward: np.ndarray
    shear_backward: np.ndarray
    scale_x: float
    scale_y: float
    full_size: tuple[int, int]

    def at(self, flow: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Full-size displacements [N, 2] (dx, dy) of `flow` (forward or backward) at full-size
        points (x, y)."""
        d = sample(flow, *self.flow_coords(x, y))
        return d / np.array([self.scale_x, self.scale_y], dtype=np.float32)

    def flow_coords(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full-size points in flow-size coordinates (pixel centres kept aligned)."""
        return (x + 0.5) * self.scale_x - 0.5, (y + 0.5) * self.scale_y - 0.5


@dataclass(frozen=True)
class FlowOptions:
    """How flows are computed.

    max_side: flows are computed with the frame's longer side at most this many pixels.
    preset: OpenCV DIS preset, one of DIS_PRESETS.
    margin: flow-size pixels around each hole whose flow is completed too rather than trusted
        (DIS smears the hole's content well beyond its border).
    """

    max_side: int = 512
    preset: str = "medium"
    margin: int = 8

    def __post_init__(self) -> None:
        if self.preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {self.preset!r}; known: {', '.join(DIS_PRESETS)}")
        if self.max_side < DIS_MIN_SIDE:
            raise ValueError(f"flow max_side must be at least {DIS_MIN_SIDE}, got {self.max_side!r}")
        if self.margin < 0:
            raise ValueError(f"flow margin must be non-negative, got {self.margin!r}")


def shear(flow: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """How much the flow changes per pixel (norm of its Jacobian), inside the hole; 0 outside.
    A completed flow that bends fast is interpolating across a motion edge: a guess."""
    total = np.zeros(flow.shape[:2], np.float32)
    for c in range(2):
        gx = cv2.Sobel(flow[..., c], cv2.CV_32F, 1, 0, ksize=3) / SOBEL_NORM
        gy = cv2.Sobel(flow[..., c], cv2.CV_32F, 0, 1, ksize=3) / SOBEL_NORM
        total += gx * gx + gy * gy
    return np.where(hole, np.sqrt(total), 0.0).astype(np.float32)


class ShotFlows:
    """Completed two-way flows between neighbouring frames of one shot, computed when first
    asked for and dropped with `forget_before`, so memory follows a window, not the shot."""

    def __init__(self, frames: np.ndarray, holes: np.ndarray, options: FlowOptions = FlowOptions()) -> None:
        """frames uint8 [N, H, W, 3] and holes bool [N, H, W] of the shot (views are fine)."""
        self._frames = frames
        self._holes = holes
        self._options = options
        h, w = holes.shape[1:]
        self.full_size = (h, w)
        self.size = scaled_size(h, w, flow_scale(h, w, options.max_side))
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[options.preset])
        self._inputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pairs: dict[int, FlowPair] = {}

    def __len__(self) -> int:
        return len(self._frames)

    def pair(self, k: int) -> FlowPair:
        """Flows between shot frames k and k + 1, each completed inside its source frame's hole
        (grown by the margin)."""
        if k not in self._pairs:
            (grey_a, hole_a), (grey_b, hole_b) = self._input(k), self._input(k + 1)
            forward = smooth_fill(self._dis.calc(grey_a, grey_b, None), hole_a)
            backward = smooth_fill(self._dis.calc(grey_b, grey_a, None), hole_b)
            h, w = self.size
            self._pairs[k] = FlowPair(forward, backward, shear(forward, hole_a), shear(backward, hole_b),
                                      w / self.full_size[1], h / self.full_size[0], self.full_size)
        return self._pairs[k]

    def forget_before(self, k: int) -> None:
        """Drops the flows of pairs, and the inputs of frames, before k."""
        for key in [key for key in self._pairs if key < k]:
            del self._pairs[key]
        for key in [key for key in self._inputs if key < k]:
            del self._inputs[key]

    def _input(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame k's DIS input, and its hole at flow size grown by the margin."""
        if k not in self._inputs:
            hole = shrink_mask(self._holes[k], self.size)
            grey = flow_grey(self._frames[k], hole, self.size)
            if self._options.margin and not hole.all():
                hole = cv2.dilate(hole.astype(np.uint8), SQUARE_3X3, iterations=self._options.margin) > 0
            self._inputs[k] = (grey, hole)
        return self._inputs[k]
