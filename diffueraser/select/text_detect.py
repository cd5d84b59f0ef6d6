"""Text regions in one image: RapidOCR's PP-OCR detection model (ONNX Runtime, shipped in the wheel).

Detection only (no recognition). The detector gives one quadrilateral per line of text, already
grown by its own unclip step (DB post-processing: distance = area × unclip_ratio / perimeter of
the shrunk kernel) to about the text's outline; `grow_quad` adds the margin that covers outlines,
shadows and anti-aliasing. `edges` and `still_there` are the cheap check that a line seen on a
detected frame is still shown on a nearby frame.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ..errors import CheckpointError

DETECT_SIDE = 960
"""The longer side of the region is scaled down to at most this before detection: 1080p
subtitles (≥ 30 px tall) keep ≥ 15 px, the size PP-OCR's detector still finds reliably."""
BOX_THRESH = 0.5
"""Mean text probability inside a box for it to count (RapidOCR's default)."""
UNCLIP_RATIO = 1.6
"""How far the detector grows its shrunk text kernel (RapidOCR's default: about the glyphs' extent)."""
MARGIN = 0.2
"""Mask margin around each line, as a share of its height: outlines, shadows, anti-aliasing."""
MIN_MARGIN = 2
"""Pixels added around a line at least."""
EDGE_LOW, EDGE_HIGH = 60, 160
"""Canny thresholds of the still-there check: text is drawn with strong contrast."""
STILL_THERE = 0.5
"""A line is still shown when this share of its edges on the detected frame is found again."""
STRAIGHT_DEGREES = 3.0
"""A line tilted at most this much is drawn as its upright box: the detector's rotated rectangles
of level text are tilted by a degree or two, which cuts glyph corners off."""
DETECTOR_NAME = "RapidOCR PP-OCR detection (ONNX Runtime, CPU)"


@dataclass(frozen=True)
class Line:
    """One line of text: a quadrilateral (4 × (x, y), float pixels) and the detector's score."""

    quad: np.ndarray
    score: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the quadrilateral."""
        return (float(self.quad[:, 0].min()), float(self.quad[:, 1].min()),
                float(self.quad[:, 0].max()), float(self.quad[:, 1].max()))


class TextDetector:
    """The detection model, loaded once on first use (thread-safe); `detect(rgb)` -> lines."""

    def __init__(self, box_thresh: float = BOX_THRESH, unclip_ratio: float = UNCLIP_RATIO) -> None:
        self.box_thresh = box_thresh
        self.unclip_ratio = unclip_ratio
        self._engine = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._engine is None:
                try:
                    from rapidocr import RapidOCR
                except ImportError as error:  # a broken install, not the user's input
                    raise CheckpointError(
                        "text detection needs the rapidocr and onnxruntime packages: "
                        "pip install rapidocr onnxruntime", missing=["rapidocr"]) from error
                self._engine = RapidOCR(params={
                    "Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "critical",
                    "Global.max_side_len": 8192, "Global.min_side_len": 32,
                    # the caller scales; the detector only rounds the sides to multiples of 32
                    "Det.limit_type": "max", "Det.limit_side_len": 8192,
                    "Det.box_thresh": self.box_thresh, "Det.unclip_ratio": self.unclip_ratio,
                })
        return self._engine

    def detect(self, rgb: np.ndarray) -> list[Line]:
        """Lines of text in a uint8 RGB image [H, W, 3], in its pixel coordinates."""
        engine = self._engine or self._load()
        found = engine(np.ascontiguousarray(rgb[..., ::-1]), use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(found, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return []
        scores = list(getattr(found, "scores", None) or [1.0] * len(boxes))
        return [Line(np.asarray(b, np.float32).reshape(4, 2), float(s)) for b, s in zip(boxes, scores)]


_shared: Optional[TextDetector] = None


def shared_detector() -> TextDetector:
    """One detector per process (the model takes a second to load)."""
    global _shared
    if _shared is None:
        _shared = TextDetector()
    return _shared


def line_height(quad: np.ndarray) -> float:
    """The shorter side of the quadrilateral: the height of a horizontal line of text."""
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    return float(min(sides[0] + sides[2], sides[1] + sides[3]) / 2)


def grow_quad(quad: np.ndarray, margin: Optional[float] = None, min_margin: float = MIN_MARGIN) -> np.ndarray:
    """The quadrilateral's rotated rectangle grown by `margin` (default MARGIN) × the line's height
    on every side."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(quad.astype(np.float32))
    pad = max(min_margin, (MARGIN if margin is None else margin) * min(w, h))
    if tilt(quad) <= STRAIGHT_DEGREES:  # a level line: its upright box (the detector's tilt is noise)
        x0, y0 = quad.min(axis=0) - pad
        x1, y1 = quad.max(axis=0) + pad
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    return cv2.boxPoints(((cx, cy), (w + 2 * pad, h + 2 * pad), angle))


def tilt(quad: np.ndarray) -> float:
    """Degrees between the quadrilateral's longer side and the horizontal (0 to 90)."""
    sides = np.roll(quad, -1, axis=0) - quad
    dx, dy = sides[int(np.argmax(np.linalg.norm(sides, axis=1)))]
    degrees = abs(np.degrees(np.arctan2(dy, dx))) % 180
    return float(min(degrees, 180 - degrees))


def edges(gray: np.ndarray) -> np.ndarray:
    """Strong edges of a uint8 grey image (bool)."""
    return cv2.Canny(gray, EDGE_LOW, EDGE_HIGH) > 0


def crop_box(line: Line, width: int, height: int) -> Optional[tuple[slice, slice]]:
    """The line's bounding box as slices into a `width` × `height` image, None if it is empty."""
    x0, y0, x1, y1 = line.bounds
    xs = slice(max(0, int(x0)), min(width, int(np.ceil(x1)) + 1))
    ys = slice(max(0, int(y0)), min(height, int(np.ceil(y1)) + 1))
    return (ys, xs) if xs.stop > xs.start and ys.stop > ys.start else None


def still_there(reference: np.ndarray, gray_crop: np.ndarray) -> bool:
    """Whether the edges `reference` (bool, of the line on its detected frame) are found again,
    within a pixel, in `gray_crop` (the same place on another frame)."""
    wanted = int(reference.sum())
    if wanted == 0:
        return False
    found = cv2.dilate(edges(gray_crop).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return int((reference & found).sum()) >= STILL_THERE * wanted
