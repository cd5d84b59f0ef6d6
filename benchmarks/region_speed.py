"""Crop against frame mode, side by side in one run: time, peak memory and hole quality.

Speed and memory: the whole method (ProPainter prior, BrushNet + motion UNet, VAE) at full size
with pseudo-weights (they cost what the released weights cost; the output means nothing), on
Big Buck Bunny at the asked size with a static watermark-sized hole (200x80 px, bottom right).
Each mode's peak is the resident high-water mark above the loaded models (VmHWM, reset before
each run). Quality: the weight-free propagation prior (real output), a logo-sized object pasted
onto Big Buck Bunny at its own 1280x720, PSNR of the hole against the clean frames, both modes at
the default working size (frame mode fills at 960x536 and scales back; crop mode at 1280x720).

    python benchmarks/region_speed.py --width 1280 --height 720 --frames 8
    python benchmarks/region_speed.py --width 1920 --height 1080 --frames 8 --skip-quality
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _footage import load_clip  # noqa: E402
from diffueraser import Eraser, Settings  # noqa: E402
from diffueraser.media import Video  # noqa: E402
from engine_speed import build_eraser  # noqa: E402
from memory import _reset_peak, _status  # noqa: E402

GIB = 2**30
HOLE = (80, 200)
"""(height, width) of the watermark-sized hole."""


def watermark(frames: int, height: int, width: int) -> np.ndarray:
    masks = np.zeros((frames, height, width), bool)
    top, left = height - HOLE[0] - height // 12, width - HOLE[1] - width // 20
    masks[:, top:top + HOLE[0], left:left + HOLE[1]] = True
    return masks


def speed(args: argparse.Namespace) -> None:
    settings = Settings(steps=2, prior="propainter", device="cpu", seed=0, max_seconds=None)
    eraser = build_eraser(settings)
    clip = Video(frames=load_clip("bigbuckbunny", 0, args.frames, (args.height, args.width)), fps=24.0)
    masks = watermark(args.frames, args.height, args.width)
    print(f"{args.frames} frames {args.width}x{args.height}, hole {HOLE[1]}x{HOLE[0]}, steps 2, ProPainter prior, "
          f"threads {torch.get_num_threads()}, models resident {_status('VmRSS') / GIB:.2f} GiB", flush=True)
    times = {}
    for mode in ("crop", "frame"):
        base = _status("VmRSS")
        _reset_peak()
        t0 = time.perf_counter()
        result = eraser(clip, masks, settings=settings.replace(region=mode))
        times[mode] = time.perf_counter() - t0
        peak = _status("VmHWM") - base
        print(f"  {mode:5s} {times[mode]:7.1f} s  peak above the models {peak / GIB:5.2f} GiB  ({result.regions[0]})",
              flush=True)
        del result
    print(f"crop mode is {times['frame'] / times['crop']:.1f}x faster")


def quality(args: argparse.Namespace) -> None:
    clean = load_clip("bigbuckbunny", 0, args.quality_frames, (720, 1280))
    holes = np.zeros(clean.shape[:3], bool)
    for t in range(len(clean)):
        holes[t, 560:620, 900 + 2 * t:1100 + 2 * t] = True  # a logo-sized object drifting right
    dirty = clean.copy()
    dirty[holes] = (250, 30, 200)
    video = Video(frames=dirty, fps=25.0)
    print(f"quality: Big Buck Bunny 1280x720, {len(clean)} frames, a 200x60 object, propagation prior, "
          f"max_size {args.max_size}")
    for mode in ("crop", "frame"):
        settings = Settings(diffusion=False, prior="propagation", device="cpu", seed=0, region=mode,
                            max_size=args.max_size)
        result = Eraser(settings)(video, holes)
        error = (result.frames[holes].astype(float) - clean[holes].astype(float)) ** 2
        print(f"  {mode:5s} hole PSNR {10 * np.log10(255 ** 2 / error.mean()):.2f} dB ({result.regions[0]})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--quality-frames", type=int, default=40)
    p.add_argument("--max-size", type=int, default=960, help="working size of the quality run")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args()
    if not args.skip_quality:
        quality(args)
    if not args.skip_speed:
        speed(args)


if __name__ == "__main__":
    main()
