"""The weight-free tracker: GrabCut seeded by the user's box and clicks, carried from frame to
frame by OpenCV DIS optical flow and re-fitted to each frame's colours.

Per object, from its earliest prompted frame: forwards to the end (re-seeded at every later
prompted frame, so a correction click takes effect there) and backwards to frame 0. Each step moves
the last mask into the next frame by the object's motion (the DIS flow inside it, fitted as a
similarity transform), then re-fits it with
GrabCut inside a band around the warped shape: the shape's eroded core is certain object, beyond
the band certain background, so the fit follows the object's edge without drifting off it; a fit
whose area strays far from the warped area is replaced by the warped mask, so it does not swell or
collapse. Fast objects are followed by also finding the object's own pixels again (masked
template matching) near where its last move points, keeping whichever move fits its pixels best.
An object that leaves the frame (or is hidden) ends as an empty mask; it is found again, by its
last whole view matched over the frame, once it is wholly back in view. Only the previous frame,
mask and that view are held: memory does not depend on the video's length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import cv2
import numpy as np

from ..prior.flow import DIS_PRESETS
from .prompts import NEGATIVE, Prompt

CLICK_REACHES = (0.05, 0.08, 0.12, 0.18, 0.26)
"""First-guess radii around clicks without a box, as shares of the frame's shorter side."""
CLICK_OUTER = 2.5
"""Beyond this many first-guess radii from the clicks is certain background."""
TEMPLATE_REACH, TEMPLATE_MIN_REACH = 1.5, 16
"""Template search window beyond the predicted place: this share of the object's size, at least px."""
TEMPLATE_MIN_SCORE = 0.5
"""Normalised cross-correlation under which a template match is not trusted."""
REDETECT_SCORE = 0.9
"""A lost object is taken as back in view only where its last whole view matches at least this well."""
GRABCUT_SEED = 0
MAX_FLOW_SAMPLES = 4000
"""Flow vectors inside the mask used to fit its motion (evenly spread)."""

Emit = Callable[[int, int, np.ndarray], None]
"""emit(frame_index, object_id, bool mask [h, w] at the frames' size)."""


class Frames(Protocol):
    """uint8 RGB frames [h, w, 3] by index (a memory map, a list, an array)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class FlowTrackOptions:
    """How the weight-free tracker works.

    preset: OpenCV DIS preset. iterations: GrabCut iterations per re-fit. core: share of the
    object's equivalent radius eroded to make its certain core. band: share of that radius (at
    least `min_band` px) beyond which a pixel is certain background. min_area: pixels under which a
    warped mask is taken as gone. area_range: a re-fit whose area leaves this range of the warped
    area is refused (the warped mask is kept). seed_radius: click seeds' radius, share of the
    shorter side. scale_range: the most the object may grow or shrink between two frames.
    min_box_share: a box whose fit covers less than this share of it is taken whole.
    """

    preset: str = "medium"
    iterations: int = 2
    core: float = 0.35
    band: float = 0.35
    min_band: int = 4
    min_area: int = 6
    area_range: tuple[float, float] = (0.75, 1.3)
    seed_radius: float = 0.012
    scale_range: tuple[float, float] = (0.9, 1.1)
    min_box_share: float = 0.05


def _disc(mask: np.ndarray, points: Sequence[tuple[float, float]], radius: int, value: int) -> None:
    for x, y in points:
        cv2.circle(mask, (int(round(x)), int(round(y))), radius, int(value), -1)


def _grabcut(frame: np.ndarray, labels: np.ndarray, iterations: int) -> Optional[np.ndarray]:
    """GrabCut from a label map (cv2.GC_*) on the labels' bounding crop; None when it cannot run
    (no background or no object sample)."""
    fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if not fg.any():
        return None
    rows, cols = np.nonzero(labels != cv2.GC_BGD)
    if len(rows) == 0:
        return None
    h, w = labels.shape
    pad = 8
    y0, y1 = max(0, rows.min() - pad), min(h, rows.max() + 1 + pad)
    x0, x1 = max(0, cols.min() - pad), min(w, cols.max() + 1 + pad)
    crop = np.ascontiguousarray(labels[y0:y1, x0:x1])
    bg = (crop == cv2.GC_BGD) | (crop == cv2.GC_PR_BGD)
    if bg.sum() < 16 or (~bg).sum() < 4:
        return None
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    image = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2BGR)
    # GrabCut seeds its colour models with k-means on OpenCV's random generator (thread-local):
    # a fixed seed makes a fit depend on its inputs only, not on the fits made before it.
    cv2.setRNGSeed(GRABCUT_SEED)
    try:
        cv2.grabCut(image, crop, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
    return out


def _keep_touching(mask: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """The connected parts of `mask` that overlap `anchor` (stray blobs elsewhere dropped)."""
    count, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    keep = np.unique(parts[anchor & mask])
    keep = keep[keep > 0]
    return np.isin(parts, keep) if len(keep) else mask


def seed_mask(frame: np.ndarray, prompt: Prompt, prior: Optional[np.ndarray] = None,
              options: FlowTrackOptions = FlowTrackOptions()) -> np.ndarray:
    """The object on a prompted frame: GrabCut on the box (outside it certain background), clicks
    as certain object / background discs; with points only, a region around the positive clicks
    (or the `prior` mask carried from earlier frames, for a correction click) is the first guess."""
    h, w = frame.shape[:2]
    radius = max(2, int(round(options.seed_radius * min(h, w))))
    positives = [p for p, l in zip(prompt.points, prompt.labels) if l != NEGATIVE]
    negatives = [p for p, l in zip(prompt.points, prompt.labels) if l == NEGATIVE]
    labels = np.full((h, w), cv2.GC_BGD, np.uint8)
    if prompt.box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        labels[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = cv2.GC_PR_FGD
    elif prior is not None and prior.any():
        grown = cv2.dilate(prior.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2 * radius) > 0
        labels[grown] = cv2.GC_PR_BGD
        labels[prior] = cv2.GC_PR_FGD
    else:
        return _seed_from_clicks(frame, positives, negatives, radius, options)
    _disc(labels, positives, radius, cv2.GC_FGD)
    _disc(labels, negatives, radius, cv2.GC_BGD)
    fitted = _grabcut(frame, labels, max(options.iterations, 4))
    if fitted is None:
        fitted = labels == cv2.GC_FGD
        if prompt.box is not None:
            fitted = labels != cv2.GC_BGD
    anchor = labels == cv2.GC_FGD
    fitted = _keep_touching(fitted, anchor) if anchor.any() else fitted
    if prompt.box is not None and fitted.sum() < options.min_box_share * (labels != cv2.GC_BGD).sum():
        fitted = labels != cv2.GC_BGD  # nothing in the box stands out from around it: take the box
    return fitted


def _seed_from_clicks(frame: np.ndarray, positives: list, negatives: list, radius: int,
                      options: FlowTrackOptions) -> np.ndarray:
    """Clicks alone say where the object is, not how big it is: GrabCut is run with a first guess
    of each size in CLICK_REACHES (a disc around the clicks, background beyond CLICK_OUTER times
    it), and the fit that agrees best (mean IoU) with the others is kept: the object's own edge is
    where fits from different guesses end up."""
    h, w = frame.shape[:2]
    fits = []
    for reach in CLICK_REACHES:
        inner = max(radius + 1, int(round(reach * min(h, w))))
        labels = np.full((h, w), cv2.GC_BGD, np.uint8)
        _disc(labels, positives, int(CLICK_OUTER * inner), cv2.GC_PR_BGD)
        _disc(labels, positives, inner, cv2.GC_PR_FGD)
        _disc(labels, positives, radius, cv2.GC_FGD)
        _disc(labels, negatives, radius, cv2.GC_BGD)
        fitted = _grabcut(frame, labels, max(options.iterations, 5))
        if fitted is None:
            fitted = labels == cv2.GC_FGD
        fits.append(_keep_touching(fitted, labels == cv2.GC_FGD))
    agreement = [np.mean([_iou(a, b) for j, b in enumerate(fits) if j != i]) for i, a in enumerate(fits)]
    return fits[int(np.argmax(agreement))]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def refit(frame: np.ndarray, warped: np.ndarray, options: FlowTrackOptions = FlowTrackOptions()) -> np.ndarray:
    """The warped mask (float [h, w] in 0..1) fitted to this frame's colours within a band around it."""
    shape = warped >= 0.5
    area = int(shape.sum())
    if area < options.min_area:
        return np.zeros(shape.shape, bool)
    radius = np.sqrt(area / np.pi)
    core_px = max(1, int(round(options.core * radius)))
    band_px = max(options.min_band, int(round(options.band * radius)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    u8 = shape.astype(np.uint8)
    core = cv2.erode(u8, kernel, iterations=core_px) > 0
    outer = cv2.dilate(u8, kernel, iterations=band_px) > 0
    labels = np.full(shape.shape, cv2.GC_BGD, np.uint8)
    labels[outer] = cv2.GC_PR_BGD
    labels[shape] = cv2.GC_PR_FGD
    labels[core] = cv2.GC_FGD
    fitted = _grabcut(frame, labels, options.iterations)
    if fitted is None:
        return shape
    fitted = _keep_touching(fitted, core if core.any() else shape)
    lo, hi = options.area_range
    if not lo * area <= fitted.sum() <= hi * area:
        return shape
    return fitted


def _touches_border(mask: np.ndarray, margin: int = 2) -> bool:
    """True when the mask reaches within `margin` pixels of the frame's border (not wholly in view)."""
    return bool(mask[:margin].any() or mask[-margin:].any() or mask[:, :margin].any() or mask[:, -margin:].any())


def _leaving(mask: np.ndarray, shift: np.ndarray, margin: int = 2, speed: float = 0.5) -> bool:
    """True when the mask touches a border of the frame (within `margin` px) and its last move
    (`shift`, px) was towards that border."""
    dx, dy = shift
    return bool((dx > speed and mask[:, -margin:].any()) or (dx < -speed and mask[:, :margin].any())
                or (dy > speed and mask[-margin:].any()) or (dy < -speed and mask[:margin].any()))


def _template_motion(mask: np.ndarray, grey_from: np.ndarray, grey_to: np.ndarray,
                     last_shift: np.ndarray) -> Optional[np.ndarray]:
    """The object (its pixels only: the mask is the template's mask) of `from` found in `to` by
    normalised cross-correlation within a window around where its last move points: a pure
    translation (2x3), or None when the object is too small, touches the border, or matches poorly."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 16:
        return None
    h, w = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if y0 == 0 or x0 == 0 or y1 == h or x1 == w:
        return None
    patch = grey_from[y0:y1, x0:x1]
    reach = int(max(TEMPLATE_MIN_REACH, TEMPLATE_REACH * max(y1 - y0, x1 - x0)))
    px, py = int(round(last_shift[0])), int(round(last_shift[1]))
    sy0, sy1 = max(0, y0 + py - reach), min(h, y1 + py + reach)
    sx0, sx1 = max(0, x0 + px - reach), min(w, x1 + px + reach)
    if sy1 - sy0 < patch.shape[0] or sx1 - sx0 < patch.shape[1]:
        return None
    shape = mask[y0:y1, x0:x1].astype(np.uint8)
    scores = cv2.matchTemplate(grey_to[sy0:sy1, sx0:sx1], patch, cv2.TM_CCOEFF_NORMED, mask=shape)
    scores[~np.isfinite(scores)] = -1.0
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    if best < TEMPLATE_MIN_SCORE:
        return None
    return np.array([[1, 0, sx0 + bx - x0], [0, 1, sy0 + by - y0]], np.float64)


def _whole_view(grey: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object's grey patch and its mask (uint8) on its bounding box: what `_found_again` looks for."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return grey[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].astype(np.uint8)


def _found_again(grey: np.ndarray, patch: np.ndarray, shape: np.ndarray) -> Optional[np.ndarray]:
    """A lost object (it left the frame, or was hidden) looked for in the whole frame by masked
    template matching of its last whole view: its shape placed where it matches (float [h, w]),
    or None unless the match is near-certain (REDETECT_SCORE)."""
    h, w = grey.shape
    if patch.shape[0] > h or patch.shape[1] > w:
        return None
    scores = cv2.matchTemplate(grey, patch, cv2.TM_CCOEFF_NORMED, mask=shape)
    scores[~np.isfinite(scores)] = -1.0
    _, best, _, (x, y) = cv2.minMaxLoc(scores)
    if best < REDETECT_SCORE:
        return None
    placed = np.zeros((h, w), np.float32)
    placed[y:y + shape.shape[0], x:x + shape.shape[1]] = shape
    return placed


def _photometric_error(mask: np.ndarray, grey_from: np.ndarray, grey_to: np.ndarray, matrix: np.ndarray) -> float:
    """Mean absolute grey difference between the object's pixels in `from`, moved by `matrix`, and
    what `to` has there (inf when the move takes the object wholly out of the frame)."""
    h, w = mask.shape
    moved = cv2.warpAffine(grey_from, matrix, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(mask.astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST) > 0
    if not inside.any():
        return float("inf")
    return float(np.abs(moved[inside].astype(np.float32) - grey_to[inside].astype(np.float32)).mean())


class FlowTracker:
    """Tracks objects through frames with DIS flow and per-frame GrabCut re-fits (no weights)."""

    name = "flow"

    def __init__(self, options: FlowTrackOptions = FlowTrackOptions()) -> None:
        self.options = options
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[options.preset])

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)

    def _warp(self, mask: np.ndarray, grey_from: np.ndarray, grey_to: np.ndarray,
              last_shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`mask` of frame `from` moved into frame `to`, float [h, w] in 0..1, and the shift applied.

        Candidate motions: the flow from → to inside the mask fitted as a similarity transform
        (RANSAC, so stray flow vectors do not pull it), and the object's patch found again in `to`
        by template matching around where its last move points (DIS loses fast objects); the one
        under which the object's pixels change least wins. A shape leaving across the frame's edge
        whose flow almost stops keeps its last move: the little of it still in view carries the
        background's flow, not its own.
        """
        h, w = mask.shape
        ys, xs = np.nonzero(mask)
        centre = np.array([xs.mean(), ys.mean()]) if len(xs) else np.zeros(2)

        def shift_of(m: np.ndarray) -> np.ndarray:
            return m[:, :2] @ centre + m[:, 2] - centre

        flow = self._flow_motion(mask, grey_from, grey_to)
        if _leaving(mask, last_shift) and np.hypot(*shift_of(flow)) < 0.5 * np.hypot(*last_shift):
            matrix = np.array([[1, 0, last_shift[0]], [0, 1, last_shift[1]]], np.float64)
        else:
            candidates = [flow]
            found = _template_motion(mask, grey_from, grey_to, last_shift)
            if found is not None:
                candidates.append(found)
            errors = [_photometric_error(mask, grey_from, grey_to, m) for m in candidates]
            matrix = candidates[int(np.argmin(errors))]
        shift = shift_of(matrix)
        warped = cv2.warpAffine(mask.astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return warped, np.asarray(shift, np.float64)

    def _flow_motion(self, mask: np.ndarray, grey_from: np.ndarray, grey_to: np.ndarray) -> np.ndarray:
        """The DIS flow inside the mask as a similarity transform (2x3); a size change beyond
        `scale_range` between two frames is a flow failure, so only the move is kept then."""
        flow = self._dis.calc(grey_from, grey_to, None)
        ys, xs = np.nonzero(mask)
        if len(xs) > MAX_FLOW_SAMPLES:
            pick = np.linspace(0, len(xs) - 1, MAX_FLOW_SAMPLES).astype(np.int64)
            ys, xs = ys[pick], xs[pick]
        src = np.stack([xs, ys], axis=1).astype(np.float32)
        dst = src + flow[ys, xs]
        matrix = None
        if len(src) >= 3:
            matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.5)
        if matrix is None or not np.isfinite(matrix).all():
            shift = np.median(dst - src, axis=0) if len(src) else np.zeros(2, np.float32)
            matrix = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float64)
        scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
        lo, hi = self.options.scale_range
        if not lo <= scale <= hi:
            centre = src.mean(axis=0)
            moved = matrix[:, :2] @ centre + matrix[:, 2]
            matrix = np.array([[1, 0, moved[0] - centre[0]], [0, 1, moved[1] - centre[1]]], np.float64)
        return matrix.astype(np.float64)

    def track(self, frames: Frames, prompts: Sequence[Prompt], emit: Emit,
              step: Optional[Callable[[], None]] = None) -> None:
        """Every frame's mask of each object in `prompts` (in the frames' pixels) through `emit`;
        `step()` after each frame's work, for progress."""
        objects = list(dict.fromkeys(p.object for p in prompts))
        for obj in objects:
            mine = sorted((p for p in prompts if p.object == obj), key=lambda p: p.frame)
            if any(p.text for p in mine):
                raise ValueError("the flow tracker takes clicks and boxes, not words")
            self._one_object(frames, obj, mine, emit, step)

    def _one_object(self, frames: Frames, obj: int, prompts: list[Prompt], emit: Emit,
                    step: Optional[Callable[[], None]]) -> None:
        by_frame: dict[int, list[Prompt]] = {}
        for p in prompts:
            by_frame.setdefault(p.frame, []).append(p)
        first = prompts[0].frame
        for direction in (1, -1):
            mask: Optional[np.ndarray] = None
            shift = np.zeros(2)
            grey_prev: Optional[np.ndarray] = None
            stop = len(frames) if direction == 1 else -1
            start = first if direction == 1 else first - 1
            if direction == -1 and first > 0:
                frame = frames[first]
                grey_prev = self._grey(frame)
                mask = self._seed(frame, by_frame[first], None)
            seen: Optional[tuple[np.ndarray, np.ndarray]] = None  # the object's last whole view
            for t in range(start, stop, direction):
                frame = frames[t]
                grey = self._grey(frame)
                warped = None
                if mask is not None and mask.any():
                    warped, shift = self._warp(mask, grey_prev, grey, shift)
                elif seen is not None:
                    warped = _found_again(grey, *seen)
                    shift = np.zeros(2)
                if t in by_frame:
                    prior = (warped >= 0.5) if warped is not None else None
                    mask = self._seed(frame, by_frame[t], prior)
                elif warped is not None:
                    mask = refit(frame, warped, self.options)
                else:
                    mask = np.zeros(frame.shape[:2], bool)
                if mask.sum() >= self.options.min_area and not _touches_border(mask):
                    seen = _whole_view(grey, mask)
                grey_prev = grey
                emit(t, obj, mask)
                if step is not None:
                    step()

    def _seed(self, frame: np.ndarray, prompts: list[Prompt], prior: Optional[np.ndarray]) -> np.ndarray:
        out = np.zeros(frame.shape[:2], bool)
        for p in prompts:
            out |= seed_mask(frame, p, prior, self.options)
        return out
