"""Frames per second of both priors on real footage at 432x240 (CPU by default).

ProPainter runs with pseudo-weights, which cost exactly what the released weights cost.

    python benchmarks/prior_speed.py [--frames 30] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _footage import load_clip, walker_masks  # noqa: E402

from diffueraser.prior.propagation import PropagationPrior  # noqa: E402

SIZE = (240, 432)


def propainter(device: str):
    from diffueraser.prior.propainter import ProPainterPrior
    from diffueraser.prior.propainter.flow_completion import RecurrentFlowCompleteNet
    from diffueraser.prior.propainter.generator import InpaintGenerator
    from diffueraser.prior.propainter.raft import RAFT
    from pseudo_weights import fill_module

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return ProPainterPrior(fill_module(RAFT(), "raft."), fill_module(RecurrentFlowCompleteNet(), "flow_complete."),
                           fill_module(InpaintGenerator(), "propainter."), device=device, dtype=dtype)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    frames = load_clip("bikes", 0, args.frames, SIZE)
    masks = walker_masks(args.frames, SIZE)
    print(f"{args.frames} frames {SIZE[1]}x{SIZE[0]}, device {args.device}, torch threads {torch.get_num_threads()}")
    for name, prior in (("propagation", PropagationPrior()), ("propainter", propainter(args.device))):
        t0 = time.perf_counter()
        prior(frames, masks)
        seconds = time.perf_counter() - t0
        print(f"| {name} | {seconds:.1f} s | {args.frames / seconds:.2f} fps |")


if __name__ == "__main__":
    main()
