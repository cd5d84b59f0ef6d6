"""The weight-free prior: flow-guided propagation of known pixels, used when no ProPainter
checkpoint is present.

Per shot (scene cuts are detected and never crossed):
1. classical two-way optical flow between neighbouring frames, completed inside the holes
   (`flow.py`);
2. every hole pixel follows the flow frame after frame, towards the future and towards the
   past, in continuous coordinates (so slow sub-pixel motion still reveals the background),
   until it lands on a known pixel. A step ends the trajectory when the forward and backward
   flows disagree, or when the completed flow bends sharply there (a motion edge crosses the
   hole, so the completion is a guess). The colour is read once, at the landing point (no blur
   from resampling at every step); the two candidates are blended by temporal distance;
3. pixels that no frame within reach reveals (a watermark over a still scene) are filled
   spatially (OpenCV Telea, the propagated pixels serving as context);
4. the whole fill is averaged along the flow with its neighbours in time (a running average
   each way), so it does not flicker where propagation and spatial fill alternate.

Memory: besides the frames (input, output, masks), the flows of at most 2 * `max_distance`
neighbouring-frame pairs at a time (24 bytes per flow-size pixel each, frames at most
`flow_max_side` pixels long) and, for the temporal average, 18 bytes per hole pixel of the shot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ..errors import InputError
from ..masks import propainter_masks
from ..progress import PRIOR, Progress, ProgressFn, silent
from .flow import FlowOptions, FlowPair, ShotFlows, sample, scaled_size, shrink_mask

CUT_PROBE_SIDE = 64
"""Longer side of the tiny grey frames compared to find scene cuts."""
CUT_CONTEXT = 5
"""Frame pairs on each side whose differences set the local level a cut must exceed."""
CUT_MIN_CONTEXT = 2
"""Fewer neighbouring pairs than this (very short videos) say nothing about the local level."""
CUT_HISTOGRAM_BINS = 8
"""Bins per RGB channel of the colour histograms compared at a candidate cut."""
DOUBTFUL_STEP_WEIGHT = 0.5
"""In the temporal average, a neighbour reached by an untrusted flow step counts this fraction
of a trusted one."""
SMOOTHING_SHARE = 0.1
"""Fraction of a shot's progress given to the temporal average."""


def detect_cuts(frames: np.ndarray, holes: np.ndarray, threshold: float = 12.0, ratio: float = 3.0,
                histogram: float = 0.2) -> list[int]:
    """Indices t where a new shot starts. On tiny frames, over pixels known in both, frames t-1
    and t must differ by a mean absolute grey difference above `threshold` (0-255 scale), and
    either their colour histograms differ (Bhattacharyya distance above `histogram`: motion keeps
    the colours, a cut changes them) or, where there are enough neighbouring pairs to compare
    with, the difference is `ratio` times their median (a jump, not steady fast motion)."""
    t, h, w = holes.shape
    if t < 2:
        return []
    size = scaled_size(h, w, min(1.0, CUT_PROBE_SIDE / max(h, w)))
    small = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames]
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in small]).astype(np.float32)
    known = ~np.stack([shrink_mask(m, size) for m in holes])
    diffs = np.zeros(t - 1)
    distances = np.zeros(t - 1)
    for i in range(t - 1):
        both = known[i] & known[i + 1]
        if both.any():
            diffs[i] = np.abs(grey[i + 1] - grey[i])[both].mean()
            a, b = (_colour_histogram(f, both) for f in (small[i], small[i + 1]))
            distances[i] = cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA)
    cuts = []
    for i in range(t - 1):
        around = np.concatenate([diffs[max(0, i - CUT_CONTEXT):i], diffs[i + 1:i + 1 + CUT_CONTEXT]])
        jump = around.size >= CUT_MIN_CONTEXT and diffs[i] > ratio * np.median(around)
        if diffs[i] > threshold and (distances[i] > histogram or jump):
            cuts.append(i + 1)
    return cuts


def _colour_histogram(frame: np.ndarray, where: np.ndarray) -> np.ndarray:
    mask = where.astype(np.uint8)
    hist = cv2.calcHist([frame], [0, 1, 2], mask, [CUT_HISTOGRAM_BINS] * 3, [0, 256] * 3)
    return hist / max(float(hist.sum()), 1.0)


@dataclass
class _Candidates:
    """Colours found for one frame's hole pixels, the frames travelled, and which were found."""

    colour: np.ndarray
    dist: np.ndarray
    valid: np.ndarray


@dataclass
class _Links:
    """One frame's hole pixels and their one-step displacements (float16) to the previous (-1)
    and next (+1) frame, with whether each step is trusted; a step is absent at shot ends."""

    ys: np.ndarray
    xs: np.ndarray
    steps: dict


class PropagationPrior:
    """Fills video holes by flow-guided propagation of known pixels (OpenCV DIS flow), a spatial
    fill for what no frame shows, and a temporal average along the flow. Needs no weights."""

    def __init__(
        self,
        mask_dilation: int = 8,
        flow_max_side: int = 512,
        dis_preset: str = "medium",
        flow_margin: int = 8,
        consistency_alpha: float = 0.03,
        consistency_beta: float = 1.0,
        max_shear: float = 0.1,
        max_distance: int = 30,
        cut_threshold: float = 12.0,
        cut_ratio: float = 3.0,
        cut_histogram: float = 0.2,
        inpaint_radius: int = 5,
        temporal_smoothing: float = 0.15,
    ) -> None:
        """
        mask_dilation: 3x3-cross dilations of the masks (ProPainter's reading; released 8).
        flow_max_side, dis_preset, flow_margin: see `flow.FlowOptions`.
        consistency_alpha, consistency_beta: a flow step is trusted when
            |f + b|^2 <= alpha (|f|^2 + |b|^2) + beta (flow-size pixels), f forward, b backward.
        max_shear: a trajectory stops where the completed flow changes faster than this per
            pixel (a motion edge crossing the hole).
        max_distance: frames a pixel may travel to find a known pixel (bounds time and memory).
        cut_threshold, cut_ratio, cut_histogram: scene-cut detection, see `detect_cuts`.
        inpaint_radius: radius of OpenCV's Telea inpainting for pixels no frame reveals.
        temporal_smoothing: weight of the flow-aligned neighbour in the running averages over
            time (0 = none).
        """
        if not isinstance(mask_dilation, int) or mask_dilation < 0:
            raise InputError(f"mask_dilation must be a non-negative integer, got {mask_dilation!r}")
        if not isinstance(max_distance, int) or max_distance < 1:
            raise InputError(f"max_distance must be a positive integer, got {max_distance!r}")
        if not 0 <= temporal_smoothing < 1:
            raise InputError(f"temporal_smoothing must be in [0, 1), got {temporal_smoothing!r}")
        try:
            self.flow = FlowOptions(flow_max_side, dis_preset, flow_margin)
        except ValueError as error:
            raise InputError(str(error)) from None
        self.mask_dilation = mask_dilation
        self.consistency_alpha = consistency_alpha
        self.consistency_beta = consistency_beta
        self.max_shear = max_shear
        self.max_distance = max_distance
        self.cut_threshold = cut_threshold
        self.cut_ratio = cut_ratio
        self.cut_histogram = cut_histogram
        self.inpaint_radius = inpaint_radius
        self.temporal_smoothing = temporal_smoothing

    def __call__(self, frames: np.ndarray, masks: np.ndarray, progress: ProgressFn = silent) -> np.ndarray:
        """Frames uint8 [T, H, W, 3] with the holes of `masks` (bool [T, H, W], True = hole,
        grown by `mask_dilation`) filled; pixels outside the grown holes are unchanged."""
        frames, masks = _check_inputs(frames, masks)
        progress(Progress.permille(PRIOR, 0.0))
        holes = propainter_masks(masks, self.mask_dilation)
        out = frames.copy()
        t = len(frames)
        bounds = [0, *detect_cuts(frames, holes, self.cut_threshold, self.cut_ratio, self.cut_histogram), t]
        shots = len(bounds) - 1
        for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            def shot_report(fraction: float, start: int = start, stop: int = stop, k: int = k) -> None:
                progress(Progress.permille(PRIOR, (start + fraction * (stop - start)) / t, f"shot {k + 1} of {shots}"))

            if holes[start:stop].any():
                self._fill_shot(frames[start:stop], holes[start:stop], out[start:stop], shot_report)
            shot_report(1.0)
        return out

    # ---- one shot -----------------------------------------------------------------------

    def _fill_shot(self, frames: np.ndarray, holes: np.ndarray, out: np.ndarray,
                   report: Callable[[float], None]) -> None:
        """Fills `out` (a view of the shot's output frames) from the shot's `frames`."""
        n = len(frames)
        flows = ShotFlows(frames, holes, self.flow)
        links = []
        for t in range(n):
            flows.forget_before(t - self.max_distance)
            ys, xs = np.nonzero(holes[t])
            if len(ys) == 0:
                links.append(_Links(ys, xs, {}))
                continue
            fill = _blend(self._trace(frames, holes, flows, t, ys, xs, 1),
                          self._trace(frames, holes, flows, t, ys, xs, -1))
            out[t][ys[fill.valid], xs[fill.valid]] = _to_uint8(fill.colour[fill.valid])
            if not fill.valid.all():
                residual = np.zeros(holes.shape[1:], np.uint8)
                residual[ys[~fill.valid], xs[~fill.valid]] = 255
                out[t] = _spatial_fill(out[t], residual, self.inpaint_radius)
            if self.temporal_smoothing > 0:
                links.append(self._links(flows, t, ys, xs))
            report((1 - SMOOTHING_SHARE) * (t + 1) / n)
        if self.temporal_smoothing > 0 and n > 1:
            self._smooth(out, links)

    def _trace(self, frames: np.ndarray, holes: np.ndarray, flows: ShotFlows, t: int,
               ys: np.ndarray, xs: np.ndarray, step: int) -> _Candidates:
        """Follows the flow from frame t's hole pixels towards later (step 1) or earlier
        (step -1) frames until each lands on a known pixel, and reads the colour there."""
        n = len(frames)
        h, w = holes.shape[1:]
        count = len(ys)
        x, y = xs.astype(np.float32), ys.astype(np.float32)
        src = np.zeros(count, np.intp)
        dist = np.zeros(count, np.float32)
        found = np.zeros(count, bool)
        active = np.arange(count)
        k = t
        for travelled in range(1, self.max_distance + 1):
            j = k + step
            if not 0 <= j < n or active.size == 0:
                break
            d, trusted = self._step(flows.pair(min(k, j)), step, x[active], y[active])
            active, d = active[trusted], d[trusted]
            qx, qy = x[active] + d[:, 0], y[active] + d[:, 1]
            rx = np.clip(np.rint(qx), 0, w - 1).astype(np.intp)
            ry = np.clip(np.rint(qy), 0, h - 1).astype(np.intp)
            landed = ~holes[j][ry, rx]
            hit = active[landed]
            src[hit], dist[hit], found[hit] = j, travelled, True
            x[hit], y[hit] = qx[landed], qy[landed]
            active = active[~landed]
            x[active], y[active] = qx[~landed], qy[~landed]
            k = j
        colour = np.zeros((count, 3), np.float32)
        if found.any():
            colour[found] = _read_known(frames, holes, src[found], x[found], y[found])
        return _Candidates(colour, dist, found)

    def _step(self, pair: FlowPair, step: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One flow step from points (x, y) of the pair's first frame (step 1) or second frame
        (step -1): full-size displacements, and whether the step is trusted: the reverse flow
        brings the points back, the flow does not bend sharply there, and they stay inside."""
        there, back = (pair.forward, pair.backward) if step == 1 else (pair.backward, pair.forward)
        d = pair.at(there, x, y)
        qx, qy = x + d[:, 0], y + d[:, 1]
        b = pair.at(back, qx, qy)
        s = np.array([pair.scale_x, pair.scale_y], dtype=np.float32)
        ds, bs = d * s, b * s
        error = ((ds + bs) ** 2).sum(1)
        bound = self.consistency_alpha * ((ds ** 2).sum(1) + (bs ** 2).sum(1)) + self.consistency_beta
        h, w = pair.full_size
        inside = (qx > -0.5) & (qx < w - 0.5) & (qy > -0.5) & (qy < h - 0.5)
        shear = sample(pair.shear_forward if step == 1 else pair.shear_backward, *pair.flow_coords(x, y))
        return d, (error <= bound) & (shear <= self.max_shear) & inside

    # ---- temporal average ---------------------------------------------------------------

    def _links(self, flows: ShotFlows, t: int, ys: np.ndarray, xs: np.ndarray) -> _Links:
        """Frame t's hole pixels with their one-step displacements both ways."""
        steps = {}
        x, y = xs.astype(np.float32), ys.astype(np.float32)
        for step in (1, -1):
            if 0 <= t + step < len(flows):
                d, trusted = self._step(flows.pair(min(t, t + step)), step, x, y)
                steps[step] = (d.astype(np.float16), trusted)
        return _Links(ys.astype(np.int32), xs.astype(np.int32), steps)

    def _smooth(self, out: np.ndarray, links: list) -> None:
        """The fill averaged along the flow with its neighbours in time: a running average
        forwards and one backwards, then their mean, so it keeps moving with the scene but
        stops flickering where propagated and invented pixels alternate."""
        a = self.temporal_smoothing
        n = len(out)
        runs = []
        for step in (-1, 1):  # -1: each frame looks back at the previous one, running forwards
            order = range(n) if step == -1 else range(n - 1, -1, -1)
            averaged: list = [None] * n
            previous = None
            for i in order:
                link = links[i]
                value = out[i][link.ys, link.xs].astype(np.float32)
                if previous is not None and step in link.steps:
                    d, trusted = link.steps[step]
                    there = sample(previous, link.xs + d[:, 0].astype(np.float32), link.ys + d[:, 1].astype(np.float32))
                    weight = np.where(trusted, a, a * DOUBTFUL_STEP_WEIGHT)[:, None]
                    value = weight * there + (1 - weight) * value
                averaged[i] = value
                previous = out[i].astype(np.float32)
                previous[link.ys, link.xs] = value
            runs.append(averaged)
        for i, link in enumerate(links):
            out[i][link.ys, link.xs] = _to_uint8((runs[0][i] + runs[1][i]) / 2)


# ---- helpers ------------------------------------------------------------------------------

def _check_inputs(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.ascontiguousarray(frames)
    masks = np.asarray(masks)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise InputError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    if masks.shape != frames.shape[:3]:
        raise InputError(f"masks must be [T, H, W] = {frames.shape[:3]}, got {masks.shape}")
    return frames, masks.astype(bool)


def _read_known(frames: np.ndarray, holes: np.ndarray, src: np.ndarray, x: np.ndarray,
                y: np.ndarray) -> np.ndarray:
    """Bilinear colours of `frames[src]` at (x, y) from known pixels only (taps in a hole are
    left out and the weights renormalised; the nearest pixel, known by construction, if all are)."""
    h, w = holes.shape[1:]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.floor(x).astype(np.intp)
    y0 = np.floor(y).astype(np.intp)
    fx, fy = x - x0, y - y0
    total = np.zeros(len(x), np.float32)
    colour = np.zeros((len(x), 3), np.float32)
    for dy, dx, weight in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi = np.minimum(x0 + dx, w - 1)
        yi = np.minimum(y0 + dy, h - 1)
        weight = weight * ~holes[src, yi, xi]
        colour += weight[:, None] * frames[src, yi, xi]
        total += weight
    empty = total < 1e-4
    if empty.any():
        xn = np.rint(x[empty]).astype(np.intp)
        yn = np.rint(y[empty]).astype(np.intp)
        colour[empty] = frames[src[empty], yn, xn]
        total[empty] = 1.0
    return colour / total[:, None]


def _blend(a: _Candidates, b: _Candidates) -> _Candidates:
    """Two candidate sets blended by inverse temporal distance."""
    wa = a.valid / np.maximum(a.dist, 1)
    wb = b.valid / np.maximum(b.dist, 1)
    total = wa + wb
    valid = total > 0
    colour = (a.colour * wa[:, None] + b.colour * wb[:, None]) / np.where(valid, total, 1.0)[:, None]
    return _Candidates(colour, np.minimum(a.dist, b.dist), valid)


def _to_uint8(colour: np.ndarray) -> np.ndarray:
    return np.clip(colour + 0.5, 0, 255).astype(np.uint8)


def _spatial_fill(frame: np.ndarray, hole: np.ndarray, radius: int) -> np.ndarray:
    """Telea inpainting of the hole (uint8 0/255); mid grey when the frame has no known pixel."""
    if hole.all():
        return np.full_like(frame, 128)
    return cv2.inpaint(frame, hole, radius, cv2.INPAINT_TELEA)
