"""The method's arithmetic and what this machine does per second of it: the floor under any CPU run.

Counts the floating-point operations of each network call at a working size (models built on the
meta device: no weights, no compute), then times the operations that carry them (3×3 convolution,
linear layer, attention) in float32, bfloat16 and float16, channels-first and channels-last.

    python benchmarks/arithmetic.py --width 576 --height 320 --frames 22
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from engine_speed import SD_VAE_FT_MSE  # noqa: E402
from reference import load_json  # noqa: E402

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _meta(cls, config: dict) -> torch.nn.Module:
    with torch.device("meta"):
        return cls.from_config(config).eval()


def flops_per_frame(height: int, width: int) -> dict[str, float]:
    """GFLOP per frame: VAE encode, VAE decode, one BrushNet + unet_main step."""
    from diffusers import AutoencoderKL

    from diffueraser.models import BrushNetModel, UNetMotionModel

    vae = _meta(AutoencoderKL, SD_VAE_FT_MSE)
    brushnet = _meta(BrushNetModel, load_json("configs/brushnet_config.json"))
    unet = _meta(UNetMotionModel, {**load_json("configs/unet_main_config.json"), "time_cond_proj_dim": None})
    frames, h, w = 2, height // 8, width // 8
    with torch.device("meta"):
        image, latents = torch.empty(1, 3, height, width), torch.empty(frames, 4, h, w)
        cond, prompt = torch.empty(frames, 5, h, w), torch.empty(1, 77, 768)
    out = {}
    with torch.inference_mode():
        for name, call, count in (
            ("VAE encode", lambda: vae.encode(image), 1),
            ("VAE decode", lambda: vae.decode(latents[:1]), 1),
            ("BrushNet + unet_main step", lambda: _denoise(brushnet, unet, latents, cond, prompt), frames),
        ):
            with FlopCounterMode(display=False) as counter:
                call()
            out[name] = counter.get_total_flops() / 1e9 / count
    return out


def _denoise(brushnet, unet, latents, cond, prompt):
    frames = latents.shape[0]
    t = torch.tensor(999, device="meta")
    res = brushnet(latents, t, encoder_hidden_states=prompt.repeat(frames, 1, 1), brushnet_cond=cond)
    return unet(latents, t, encoder_hidden_states=prompt, num_frames=frames,
                down_block_add_samples=res.down_block_res_samples, mid_block_add_sample=res.mid_block_res_sample,
                up_block_add_samples=res.up_block_res_samples)


def _rate(fn, flop: float, repeats: int = 3) -> float:
    with torch.inference_mode():
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
    return flop * repeats / (time.perf_counter() - start) / 1e9


def throughput(height: int, width: int) -> list[tuple[str, str, float]]:
    """(operation, dtype/layout, GFLOP/s) for the operations that carry the method's arithmetic."""
    rows = []
    c, hw = 256, (height // 2, width // 2)  # a VAE-decoder-sized convolution
    conv_flop = 2 * c * c * 9 * hw[0] * hw[1]
    tokens, dim, hidden = 4 * (height // 8) * (width // 8), 320, 1280
    heads, head_dim = 8, 40
    for dtype in DTYPES:
        for layout in (torch.contiguous_format, torch.channels_last):
            conv = torch.nn.Conv2d(c, c, 3, padding=1).to(dtype=dtype, memory_format=layout)
            x = torch.randn(1, c, *hw).to(dtype=dtype, memory_format=layout)
            name = "channels-last" if layout == torch.channels_last else "channels-first"
            rows.append(("3x3 convolution", f"{dtype} {name}", _rate(lambda: conv(x), conv_flop)))
        a, w = torch.randn(tokens, dim).to(dtype), torch.randn(hidden, dim).to(dtype)
        rows.append(("linear", str(dtype), _rate(lambda: F.linear(a, w), 2 * tokens * dim * hidden)))
        q = torch.randn(4, heads, tokens // 4, head_dim).to(dtype)
        rows.append(("attention (SDPA)", str(dtype),
                     _rate(lambda: F.scaled_dot_product_attention(q, q, q), 4 * 4 * heads * (tokens // 4) ** 2 * head_dim)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--frames", type=int, default=22)
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args()

    per_frame = flops_per_frame(args.height, args.width)
    # every frame: two encodes (masked frame, prior), `steps` denoiser passes, one decode
    calls = {"VAE encode": 2 * args.frames, "VAE decode": args.frames, "BrushNet + unet_main step": args.steps * args.frames}
    total = 0.0
    print(f"{args.frames} frames {args.width}x{args.height}, {args.steps} steps, threads {torch.get_num_threads()}")
    for name, gflop in per_frame.items():
        tflop = gflop * calls[name] / 1e3
        total += tflop
        print(f"  {name:26s} {gflop:7.0f} GFLOP per frame x {calls[name]:3d} = {tflop:6.1f} TFLOP")
    print(f"  total {total:.1f} TFLOP (prior not counted)")
    for op, kind, rate in throughput(args.height, args.width):
        print(f"  {op:18s} {kind:34s} {rate:6.0f} GFLOP/s")


if __name__ == "__main__":
    main()
